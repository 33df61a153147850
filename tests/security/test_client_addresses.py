"""Issue 16, item 5: whose address a request comes from. X-Forwarded-For counts only from a
peer in NEWSLETTER_TRUSTED_PROXIES, as uvicorn applies it under the real `newsletter web`;
rate limits count an IPv6 client by its /64. On both backends (the limits live in Redis
when the broker is Redis)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from newsletter import db
from newsletter.config import Settings, child_env, get_settings
from newsletter.mail.capture import free_port
from newsletter.models import ConsentEvent
from tests.conftest import offer_topics


@contextmanager
def newsletter_web(log: Path, **env: str) -> Iterator[str]:
    """`newsletter web` on a free port with the test's settings plus ``env``."""
    port = free_port("127.0.0.1")
    command = [str(Path(sys.executable).with_name("newsletter")), "web", "--host",
               "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, env={**child_env(get_settings()), **env},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def syria(fresh):
    with db.session_scope() as session:
        offer_topics(session, "Syria")
    return fresh


def sign_up(client: httpx.Client, email: str, forwarded_for: str | None = None) -> int:
    page = client.get("/subscribe").text
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    r = client.post("/subscribe", headers=headers, data={
        "email": email, "topics": "syria", "frequency": "weekly", "consent": "yes",
        "form_token": token})
    assert r.status_code in (200, 429), r.text[r.text.find("<main"):][:1500]
    return r.status_code


def ledger_ips() -> list[str | None]:
    with db.session_scope() as session:
        return list(session.scalars(select(ConsentEvent.ip).order_by(ConsentEvent.id)))


def test_loopback_is_the_default_trusted_proxy() -> None:
    assert Settings().trusted_proxies == ["127.0.0.1", "::1"]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(syria, tmp_path) -> None:
    # This test's peer is 127.0.0.1; trusting only another proxy, its header is a lie.
    with newsletter_web(tmp_path / "web.log", NEWSLETTER_TRUSTED_PROXIES="10.9.8.7",
                        NEWSLETTER_SUBSCRIBE_RATE_LIMIT="2/minute") as base, \
            httpx.Client(base_url=base) as client:
        answers = [sign_up(client, f"u{n}@example.com", f"198.51.100.{n}") for n in range(3)]
    assert answers == [200, 200, 429]  # one client, whatever the header says
    assert ledger_ips() == ["127.0.0.1", "127.0.0.1"]


def test_forwarded_for_from_a_trusted_proxy_names_the_reader(syria, tmp_path) -> None:
    with newsletter_web(tmp_path / "web.log", NEWSLETTER_TRUSTED_PROXIES="127.0.0.0/8",
                        NEWSLETTER_SUBSCRIBE_RATE_LIMIT="2/minute") as base, \
            httpx.Client(base_url=base) as client:
        first = [sign_up(client, f"a{n}@example.com", "203.0.113.10") for n in range(3)]
        other = sign_up(client, "b@example.com", "203.0.113.11")
    assert first == [200, 200, 429] and other == 200  # each reader has their own limit
    assert ledger_ips() == ["203.0.113.10", "203.0.113.10", "203.0.113.11"]


def test_two_addresses_in_one_ipv6_64_share_a_limit(syria, tmp_path) -> None:
    with newsletter_web(tmp_path / "web.log",
                        NEWSLETTER_SUBSCRIBE_RATE_LIMIT="2/minute") as base, \
            httpx.Client(base_url=base) as client:
        line = [sign_up(client, f"v{n}@example.com", f"2001:db8:1:2::{n + 1:x}")
                for n in range(2)]
        same_64 = sign_up(client, "v3@example.com", "2001:db8:1:2:ffff:ffff:ffff:ffff")
        next_64 = sign_up(client, "w@example.com", "2001:db8:1:3::1")
    assert line == [200, 200] and same_64 == 429 and next_64 == 200
