"""A webhook receiver on loopback (a real HTTP server in a thread) that verifies each
request's signature with the Standard Webhooks library, and the settings these tests run on."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from newsletter import db
from newsletter.config import reload_settings
from newsletter.mail.capture import free_port

# Set before the module's worker starts (it reads them once): the receiver is on loopback,
# and retries come after a fraction of a second instead of 30 s. test_defaults.py shows the
# operators' defaults.
TEST_ENV = {"NEWSLETTER_WEBHOOK_ALLOW_PRIVATE": "true", "NEWSLETTER_WEBHOOK_RETRY_BASE_S": "0.2",
            "NEWSLETTER_WEBHOOK_RETRY_MAX_S": "0.4"}


@pytest.fixture(scope="module", autouse=True)
def webhook_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    reload_settings()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reload_settings()


@contextmanager
def settings(**env: str) -> Iterator[None]:
    """These settings (NEWSLETTER_ + the key upper-cased) in this process for a block."""
    names = {f"NEWSLETTER_{k.upper()}": v for k, v in env.items()}
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    reload_settings()
    db.dispose_engines()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reload_settings()
        db.dispose_engines()


class Receiver:
    """Answers ``status`` to every POST; keeps what arrived with a valid signature."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.secret = ""
        self.status = 200
        self.received: list[dict] = []  # verified: {"id", "type", "data", "timestamp"}
        self.forged = 0
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests += 1
                    status = receiver.status
                    if status == 200:
                        try:
                            payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                        except Exception:
                            receiver.forged += 1
                            status = 400
                        else:
                            receiver.received.append({"id": self.headers["webhook-id"],
                                                      **payload})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        return Handler

    def up(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: a connection is refused."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def types_for(self, key: str, value: int) -> list[str]:
        return [r["type"] for r in self.received if r["data"].get(key) == value]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    r.down()


