"""Issue 16, item 5: every body is read only up to its route's stated size, through a real
uvicorn (newsletter/web/bodies.py): a Content-Length over it is refused before a byte of
the body is read, and a chunked body without one is counted as it arrives."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from newsletter import db
from tests.conftest import ADMIN_TOKEN, configure, live_web

KB = 1024
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    var = tmp_path_factory.mktemp("bodies")
    configure(var, f"sqlite:///{var / 'web.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    with live_web(var / "web.log") as base:
        yield base


def _form_of(size: int) -> bytes:
    body = b"email=reader%40example.com&topics=syria&frequency=weekly&consent=yes&website="
    return body + b"x" * (size - len(body))


def _chunks(body: bytes, size: int = 1000):
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_the_sign_up_form_takes_16_kb_and_not_a_byte_more(web) -> None:
    at_limit = httpx.post(f"{web}/subscribe", content=_form_of(16 * KB), headers=FORM)
    # Read and parsed: the form again (the honeypot field is longer than it takes).
    assert at_limit.status_code == 422 and "longer than it can be" in at_limit.text
    over = httpx.post(f"{web}/subscribe", content=_form_of(16 * KB + 1), headers=FORM)
    assert over.status_code == 413
    assert over.headers["content-type"].startswith("text/html")
    assert "Too much to send" in over.text and "16 KB" in over.text


def test_a_chunked_body_without_a_length_is_counted_as_it_arrives(web) -> None:
    ok = httpx.post(f"{web}/subscribe", content=_chunks(_form_of(16 * KB)), headers=FORM)
    assert ok.status_code == 422 and "longer than it can be" in ok.text  # parsed
    over = httpx.post(f"{web}/subscribe", content=_chunks(_form_of(16 * KB + 1)),
                      headers=FORM)
    assert over.status_code == 413 and "Too much to send" in over.text


def test_a_huge_declared_length_is_refused_before_the_body_is_sent(web) -> None:
    # A gigabyte announced and never sent: the answer comes at once, from the headers.
    host, port = urlsplit(web).hostname, urlsplit(web).port
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"POST /preferences/whatever HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 1000000000\r\n\r\n")
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("path, limit", [
    ("/api/articles", 1024 * KB), ("/api/subscribers", 5 * 1024 * KB),
    ("/api/editions", 1024 * KB)])
def test_the_admin_api_answers_in_json_past_its_routes_limit(web, path, limit) -> None:
    over = httpx.post(f"{web}{path}", content=b" " * (limit + 1), headers=AUTH | {
        "Content-Type": "application/json"})
    assert over.status_code == 413
    assert over.json() == {"detail": f"request body over {limit // (1024 * KB)} MB"}
    chunked = httpx.post(f"{web}{path}", content=_chunks(b" " * (limit + 1), 64 * KB),
                         headers=AUTH | {"Content-Type": "application/json"})
    assert chunked.status_code == 413


def test_the_bounce_api_keeps_its_10_mb(web) -> None:
    # Nine MB of a raw message is read (and found to be no report), not refused for size.
    body = b"From: x@example.com\r\nSubject: hi\r\n\r\n" + b"a" * (9 * 1024 * KB)
    r = httpx.post(f"{web}/api/bounces", content=body,
                   headers=AUTH | {"Content-Type": "message/rfc822"}, timeout=30)
    assert r.status_code != 413, r.text


def test_the_import_takes_its_10000_rows(web) -> None:
    # The largest import the API accepts, with long addresses, fits its limit.
    rows = ",".join(f'{{"email":"{"r" * 60}{n}@{"d" * 40}.example","topics":["syria","jordan"],'
                    f'"frequency":"weekly","consented_at":"2026-01-01T00:00:00Z",'
                    f'"source":"old-tool"}}' for n in range(10_000))
    body = f"[{rows}]".encode()
    r = httpx.post(f"{web}/api/subscribers", content=body,
                   headers=AUTH | {"Content-Type": "application/json"}, timeout=120)
    assert r.status_code == 200, r.text[:500]
