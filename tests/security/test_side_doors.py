"""Item 10: tokens and addresses stay out of access logs; every answer carries nosniff, a
CSP and frame-ancestors, token pages send no referrer; /metrics, /docs and /openapi.json
answer only to a token unless made public."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from newsletter import db, tokens
from newsletter.config import child_env, get_settings, reload_settings
from newsletter.mail.capture import free_port
from newsletter.models import Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, live_web

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))
EMAIL = "leaky.reader+news@example.com"


def reader() -> Reader:
    with db.session_scope() as session:
        row = Reader(email=EMAIL, status="active", frequency="weekly")
        session.add(row)
        session.flush()
        session.expunge(row)
        return row


def secrets_of(row: Reader) -> dict[str, str]:
    return {"unsubscribe": tokens.make("unsubscribe", row.id, row.email),
            "preferences": tokens.make("preferences", row.id, row.email),
            "confirm": tokens.make("confirm", row.id, row.email),
            "view": tokens.make("view", row.id, row.email, t="confirm")}


def visit(base: str, found: dict[str, str]) -> None:
    """What a reader, a mail scanner and an editor do with links that name a reader."""
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get(f"/unsubscribe/{found['unsubscribe']}").status_code == 200
        assert client.get(f"/preferences/{found['preferences']}").status_code == 200
        assert client.get(f"/preferences/{found['preferences']}/export.json").status_code < 500
        client.get(f"/confirm/{found['confirm']}")
        client.get(f"/emails/{found['view']}")
        assert client.get(f"/api/subscribers/{quote(EMAIL)}", headers=AUTH).status_code == 200
        assert client.get(f"/api/subscribers/{EMAIL}", headers=AUTH).status_code == 200
        client.get(f"/subscribe?email={quote(EMAIL)}")
        assert client.post(f"/unsubscribe/{found['unsubscribe']}",
                           data={"List-Unsubscribe": "One-Click"}).status_code == 200


def assert_nothing_leaked(log: str, found: dict[str, str]) -> None:
    assert "/unsubscribe/[redacted]" in log and "/api/subscribers/[redacted]" in log, log[-3000:]
    for token in found.values():
        assert token not in log and token.split(".")[0] not in log
    for spelling in (EMAIL, quote(EMAIL), quote(EMAIL, safe=""), "leaky.reader"):
        assert spelling not in log


def test_the_access_log_of_a_real_server_holds_no_token_or_address(fresh, tmp_path) -> None:
    found = secrets_of(reader())
    log = tmp_path / "web.log"
    with live_web(log) as base:
        visit(base, found)
        time.sleep(0.3)  # the access log is written after the answer
    assert_nothing_leaked(log.read_text(), found)


def test_newsletter_web_with_several_processes_redacts_its_access_log(fresh, tmp_path) -> None:
    # `newsletter web --workers 2` serves from spawned processes of its own (web/serve.py).
    found = secrets_of(reader())
    port = free_port("127.0.0.1")
    log = tmp_path / "web.log"
    proc = subprocess.Popen([NEWSLETTER, "web", "--port", str(port), "--workers", "2"],
                            env=child_env(get_settings()), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        visit(base, found)
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
    assert_nothing_leaked(log.read_text(), found)


def test_our_own_log_lines_lose_the_tokens_of_links_they_quote(tmp_path) -> None:
    code = ("import logging; from newsletter import logs; logs.configure(); "
            "logging.getLogger('newsletter.delivery').warning("
            "'relay said no for %s', 'https://news.example/unsubscribe/SECRETTOKEN.abc.def'); "
            "logging.getLogger('newsletter.web').error('/preferences/OTHERSECRET.x failed')")
    for fmt in ("json", "text"):
        env = {**os.environ, "NEWSLETTER_LOG_FORMAT": fmt, "NEWSLETTER_VAR_DIR": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "/unsubscribe/[redacted]" in done.stderr and "/preferences/[redacted]" in done.stderr
        assert "SECRETTOKEN" not in done.stderr and "OTHERSECRET" not in done.stderr


# ---------------------------------------------------------------- headers


@pytest.fixture
def client(fresh) -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


def test_every_answer_says_nosniff_and_carries_a_policy_without_inline_script(client) -> None:
    found = secrets_of(reader())
    for path in ("/", "/subscribe", "/healthz", "/static/site.css", "/editions/1", "/nowhere",
                 f"/unsubscribe/{found['unsubscribe']}", f"/preferences/{found['preferences']}",
                 f"/confirm/{found['confirm']}", f"/emails/{found['view']}", "/unsubscribe/bad",
                 "/api/editions/1", "/metrics", "/openapi.json"):
        r = client.get(path, headers=AUTH if path.startswith("/api/") else {})
        assert r.headers["x-content-type-options"] == "nosniff", path
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, path
        # Our own script files at most (static/timezone.js on the form): never inline
        # script, eval or another origin's; emails in the browser run none at all.
        scripts = re.search(r"script-src ([^;]*)", policy)
        assert scripts is None or scripts.group(1) == "'self'", path
        if path.startswith("/emails/"):
            assert scripts is None, path
    assert client.post("/subscribe", data={}).headers["x-content-type-options"] == "nosniff"


def test_token_pages_send_no_referrer(client) -> None:
    found = secrets_of(reader())
    for path in (f"/unsubscribe/{found['unsubscribe']}", f"/preferences/{found['preferences']}",
                 f"/confirm/{found['confirm']}", f"/emails/{found['view']}", "/unsubscribe/bad"):
        assert client.get(path).headers["referrer-policy"] == "no-referrer", path
    r = client.post(f"/unsubscribe/{found['unsubscribe']}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and r.headers["referrer-policy"] == "no-referrer"
    # The archive may tell an article's site where its readers came from (not who they are).
    assert client.get("/subscribe").headers["referrer-policy"] == "strict-origin-when-cross-origin"


def test_our_templates_need_no_inline_script_or_style() -> None:
    # What lets the policy say default-src 'none' and style-src 'self' on our pages (the
    # sign-up box, under embed/, loads its one script of ours from /static: never inline).
    # embed/snippet.html is not one of our pages: it is the code a site pastes into its own.
    folder = Path(__file__).resolve().parents[2] / "newsletter" / "web" / "templates"
    boxes = [t for t in folder.glob("embed/*.html") if t.name != "snippet.html"]
    for template in [*folder.glob("*.html"), *boxes]:
        # A script file of our own is what script-src 'self' allows; its tag holds nothing.
        text = re.sub(r'<script src="/static/[\w.-]+\.js"( defer)?></script>', "",
                      template.read_text())
        assert not re.search(r"<script|<style|\sstyle=|\son[a-z]+=|javascript:", text, re.I), template


def test_only_the_sign_up_box_may_be_framed_and_only_by_embed_origins(fresh,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_EMBED_ORIGINS", "https://www.news.example")
    reload_settings()
    try:
        client = TestClient(create_app())
        r = client.get("/embed/subscribe")
        assert r.headers["content-security-policy"].endswith(
            "frame-ancestors https://www.news.example")
        r = client.get("/subscribe")
        assert r.headers["content-security-policy"].endswith("frame-ancestors 'none'")
    finally:
        monkeypatch.undo()
        reload_settings()


@contextmanager
def other_site(html: str) -> Iterator[str]:
    """A page on another origin, served by a plain HTTP server on loopback."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_browser_shows_our_pages_under_their_policy_and_refuses_to_frame_them(
        fresh, tmp_path, browser) -> None:  # noqa: F811
    found = secrets_of(reader())
    with live_web(tmp_path / "web.log") as base:
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        for path in ("/subscribe", f"/preferences/{found['preferences']}",
                     f"/unsubscribe/{found['unsubscribe']}", f"/emails/{found['view']}"):
            assert page.goto(base + path).status == 200, path
            page.wait_for_load_state("load")
            assert not [m for m in console if "Content Security Policy" in m], (path, console)
        page.goto(base + "/subscribe")
        # Our stylesheet applied (the masthead is not the browser's default block).
        assert page.evaluate("getComputedStyle(document.querySelector('.brand')).fontWeight"
                             ) == "700"
        # Another site framing the form (clickjacking) gets nothing: a page of another
        # origin (another port on this machine) that puts our form in an iframe.
        with other_site(f'<iframe src="{base}/subscribe" width="600" height="400"></iframe>'
                        ) as elsewhere:
            page.goto(elsewhere)
            page.wait_for_timeout(1500)
        framed = page.frames[1]
        assert framed.url.startswith("chrome-error://"), framed.url  # refused, not loaded
        assert "<form" not in framed.content()


# ---------------------------------------------------------------- operator pages


def test_metrics_and_the_api_description_are_not_public_by_default(client) -> None:
    for path in ("/metrics", "/openapi.json", "/docs"):
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}):
            r = client.get(path, headers=headers)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer" and "bearer token" in r.text
            assert "newsletter_" not in r.text and "/api/articles" not in r.text
        assert client.get(path, headers=AUTH).status_code == 200, path
    assert "/api/articles" in client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert "swagger" in client.get("/docs", headers=AUTH).text.lower()
    assert client.get("/redoc", headers=AUTH).status_code == 404  # not served at all


def test_a_scraper_token_opens_metrics_only(fresh, monkeypatch) -> None:
    scraper = "prometheus-scraper-token-0123456789abcdef"
    monkeypatch.setenv("NEWSLETTER_METRICS_TOKEN", scraper)
    reload_settings()
    try:
        client = TestClient(create_app())
        bearer = {"Authorization": f"Bearer {scraper}"}
        r = client.get("/metrics", headers=bearer)
        assert r.status_code == 200 and "newsletter_" in r.text
        assert client.get("/openapi.json", headers=bearer).status_code == 401
        assert client.post("/api/editions", headers=bearer,
                           json={"frequency": "daily"}).status_code == 401
    finally:
        monkeypatch.undo()
        reload_settings()


def test_metrics_public_and_docs_public_open_them_to_anyone(fresh, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_METRICS_PUBLIC", "true")
    monkeypatch.setenv("NEWSLETTER_DOCS_PUBLIC", "true")
    reload_settings()
    try:
        client = TestClient(create_app())
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, path
        assert client.get("/api/editions/1").status_code == 401  # the API itself stays shut
    finally:
        monkeypatch.undo()
        reload_settings()
