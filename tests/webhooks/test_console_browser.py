"""The webhooks page in real headless Chromium against a live server: an admin adds an
endpoint and copies its secret (shown once), sees what was delivered, the last attempts and
a dead letter, retries it, and removes the endpoint after confirming. axe-core checks each
page; screenshots at phone and desktop width (to NEWSLETTER_SCREENSHOTS too, if set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter import events
from newsletter.cli import app as cli
from tests.browser.test_console import Console, axe_source, chromium  # noqa: F401 - fixtures
from tests.conftest import live_web
from tests.webhooks.conftest import settings
from tests.webhooks.test_delivery import pump, pump_until, record, rows

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

CHIEF, PASSWORD = "chief@news.example", "a long console password"


@pytest.fixture
def live(fresh, tmp_path):
    with live_web(tmp_path / "web.log", NEWSLETTER_BASE_URL="http://127.0.0.1") as base:
        yield base


def test_the_webhooks_page(backend, live, chromium, axe_source, dispatcher, receiver,  # noqa: F811
                           tmp_path) -> None:
    dispatcher.accept()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    result = CliRunner().invoke(cli, ["editors", "add", CHIEF, "--role", "admin",
                                      "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    chief = Console(chromium, live, axe_source, shots, "admin")
    chief.goto("/admin/webhooks")
    chief.sign_in(CHIEF, PASSWORD)
    page = chief.page
    assert page.get_by_text("No endpoints yet").count() == 1
    page.get_by_label("URL").fill("http://no-such-host.invalid/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    assert "Cannot resolve" in page.locator("#url-error").inner_text()
    chief.check("webhooks-refused")
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("edition.paused").uncheck()
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("whsec_")
    chief.check("webhooks-created")
    receiver.secret = secret

    receiver.status = 500
    with settings(webhook_max_attempts="2"):
        record(events.READER_CONFIRMED, reader_id=7)
        record(events.READER_UNSUBSCRIBED, reader_id=7, method="one-click", edition_id=3)
        pump_until(lambda: rows()[0].status == "dead")
    receiver.status = 200
    pump_until(lambda: rows()[1].status == "delivered")
    chief.goto("/admin/webhooks")
    assert secret not in page.content()  # shown once
    assert "HTTP 500" in page.locator("#dead + table").inner_text()
    chief.check("webhooks-dead-letter")
    page.get_by_role("button", name="Retry reader.confirmed").click()
    assert "queued again" in page.get_by_role("status").inner_text()
    pump()
    assert receiver.types_for("reader_id", 7) == ["reader.unsubscribed", "reader.confirmed"]

    page.get_by_role("link", name=f"Remove {receiver.url}").click()
    chief.check("webhook-remove")
    page.get_by_role("button", name="Remove the endpoint").click()
    assert "removed" in page.get_by_role("status").inner_text()
    assert page.get_by_text("No endpoints yet").count() == 1
    # The refused form's 422 (and the favicon's 404) are answers, not failures of the page.
    assert [e for e in chief.errors if "the server responded with a status of 4" not in e] == []

    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)
