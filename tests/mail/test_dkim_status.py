"""What the console shows of DKIM (mail.dkim.status): off, signing with a selector and a key
of some length, or configured but broken; never the key itself."""

from __future__ import annotations

import subprocess

import pytest

from newsletter.config import reload_settings
from newsletter.mail import dkim


@pytest.fixture
def settings(monkeypatch):
    def use(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(f"NEWSLETTER_{name}", value)
        reload_settings()
        dkim._key.cache_clear()

    yield use
    for name in ("DKIM_KEY_FILE", "DKIM_SELECTOR", "DKIM_DOMAIN"):
        monkeypatch.delenv(f"NEWSLETTER_{name}", raising=False)
    reload_settings()
    dkim._key.cache_clear()


def test_off_by_default(settings) -> None:
    settings()
    assert dkim.status() == dkim.Status(False)


def test_a_working_key_shows_its_selector_domain_and_length_not_itself(settings,
                                                                      tmp_path) -> None:
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    settings(DKIM_KEY_FILE=str(key), DKIM_SELECTOR="news2026", DKIM_DOMAIN="news.example")
    status = dkim.status()
    assert status == dkim.Status(True, "news2026", "news.example", 2048, "")
    assert "PRIVATE" not in repr(status)


@pytest.mark.parametrize("content, why", [(None, "cannot read"), (b"not a key", "not a PEM")])
def test_a_configured_key_that_cannot_sign_says_why(settings, tmp_path, content, why) -> None:
    key = tmp_path / "dkim.pem"
    if content is not None:
        key.write_bytes(content)
    settings(DKIM_KEY_FILE=str(key), DKIM_SELECTOR="news2026")
    status = dkim.status()
    assert status.configured and status.key_bits is None and why in status.problem
