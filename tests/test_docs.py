"""The operator guide covers every setting; the README every command; compose is valid."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from newsletter.cli import app
from newsletter.config import Settings
from tests.conftest import REQUIRE_SERVERS

ROOT = Path(__file__).resolve().parent.parent


def test_operator_guide_covers_every_setting() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}" not in guide
               and f", {name.upper()}`" not in guide and f"`{name.upper()}`" not in guide]
    assert missing == []


def test_readme_names_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    group = typer.main.get_group(app)
    missing = [name for name in group.commands if f"newsletter {name}" not in readme]
    assert missing == []


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        if REQUIRE_SERVERS:
            pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    # The secrets compose requires (it has no defaults for them).
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "s" * 40, "NEWSLETTER_ADMIN_TOKEN": "a" * 40,
           "NEWSLETTER_HASH_KEY": "h" * 40}
    done = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
