"""The console's browser fixtures (Chromium, axe-core from its npm package, a live server),
defined in test_console.py, for every browser test of the console."""

from tests.browser.test_console import axe_source, chromium, live  # noqa: F401
