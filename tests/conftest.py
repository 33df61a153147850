"""Real components for tests: a loopback SMTP server, databases, brokers and a Celery worker.

Backends: ``embedded`` (SQLite + the filesystem broker) always; ``postgres_redis`` when
NEWSLETTER_TEST_DATABASE_URL and NEWSLETTER_TEST_REDIS_URL are set. With
NEWSLETTER_TEST_REQUIRE_SERVERS=1 (CI) an unreachable server fails the run instead of
skipping it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from newsletter import db, events, processes
from newsletter.config import child_env, reload_settings
from newsletter.mail.capture import free_port
from newsletter.models import Base

REQUIRE_SERVERS = os.environ.get("NEWSLETTER_TEST_REQUIRE_SERVERS") == "1"
PG_URL = os.environ.get("NEWSLETTER_TEST_DATABASE_URL", "")


def _redis_of_this_worker(url: str) -> str:
    """The Redis database this pytest process may flush. Alone: the configured one. Under
    pytest-xdist (``-n N``) worker gwK takes the configured db number XOR K, so that no two
    workers flush each other's queues: with ``-n 2`` db 15 and its pair 14, or 12 and 13 —
    the aligned block of N databases that holds the configured one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0) ^ int(worker.removeprefix("gw"))
    return urlunsplit(parts._replace(path=f"/{number}"))


REDIS_URL = _redis_of_this_worker(os.environ.get("NEWSLETTER_TEST_REDIS_URL", ""))
# At least 32 characters: web, worker and beat refuse shorter secrets when BASE_URL is public
# (as it is in these tests: https://news.example).
ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"
SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"
HASH_KEY = "test-hash-key-0123456789abcdef0123456789abc"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# ---------------------------------------------------------------- order

# Files that mostly wait (workers killed and recovered at the operators' default timings,
# a Redis restarted, the minute-long confirmation ceiling) run first: under ``-n 2`` the two
# processes then end together instead of one of them waiting on these alone at the end.
WAITING_FIRST = ("tests/reliability/", "tests/security/test_confirmation_ceiling")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(WAITING_FIRST))  # stable


# ---------------------------------------------------------------- SMTP

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class SmtpSink:
    """What a real SMTP server on loopback received, in order."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        # Addresses starting "bounce-" do not exist here, as on a real mail server.
        if address.startswith("bounce-"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content or envelope.content))
        return "250 OK"

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received]

    def wait_for(self, count: int, timeout: float = 60) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return self.messages()
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.received)}")


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[SmtpSink, str]]:
    sink = SmtpSink()
    port = free_port("127.0.0.1")
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, f"smtp://127.0.0.1:{port}"
    controller.stop()


# ---------------------------------------------------------------- backends

def _unavailable(reason: str) -> None:
    if REQUIRE_SERVERS:
        pytest.fail(f"NEWSLETTER_TEST_REQUIRE_SERVERS=1 but {reason}")
    pytest.skip(reason)


def _fresh_postgres() -> tuple[str, callable]:
    import psycopg

    if not PG_URL:
        _unavailable("NEWSLETTER_TEST_DATABASE_URL is not set (PostgreSQL tests need it)")
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"nl_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL at NEWSLETTER_TEST_DATABASE_URL is unreachable: {exc}")
    base, _, _ = admin.rpartition("/")
    url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


def _fresh_redis() -> str:
    import redis

    if not REDIS_URL:
        _unavailable("NEWSLETTER_TEST_REDIS_URL is not set (Redis tests need it)")
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        client.flushdb()  # no stale tasks from an earlier run against a dropped database
    except redis.RedisError as exc:
        _unavailable(f"Redis at NEWSLETTER_TEST_REDIS_URL is unreachable: {exc}")
    return REDIS_URL


@dataclass
class Backend:
    name: str
    var: Path
    worker_log: Path
    smtp: SmtpSink


def configure(var: Path, database_url: str, broker_url: str, smtp_url: str) -> None:
    """Point this process's settings (and so its dispatcher) at a backend."""
    os.environ.update(
        NEWSLETTER_VAR_DIR=str(var), NEWSLETTER_DATABASE_URL=database_url,
        NEWSLETTER_BROKER_URL=broker_url, NEWSLETTER_SMTP_URL=smtp_url,
        NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN, NEWSLETTER_BASE_URL="https://news.example",
        NEWSLETTER_SECRET_KEY=SECRET_KEY, NEWSLETTER_HASH_KEY=HASH_KEY,
        NEWSLETTER_FROM_ADDRESS="Levant Ledger <digest@news.example>",
        # Tests post the form at machine speed and many times from one IP; the tests of
        # these two guards set them back on.
        NEWSLETTER_FORM_MIN_SECONDS="0", NEWSLETTER_SUBSCRIBE_RATE_LIMIT="",
        # Workers log JSON lines and serve their metrics, as in production.
        NEWSLETTER_LOG_FORMAT="json", NEWSLETTER_WORKER_METRICS_PORT=str(free_port("127.0.0.1")),
    )
    reload_settings()
    db.dispose_engines()
    # A new broker: forget any "broker down" backoff an earlier module left behind.
    events.set_dispatcher(None)


def wait_ready(logfile: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Block until the worker logs that it is ready; raise if it died or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}; see {logfile}")
        if logfile.exists() and b"ready." in logfile.read_bytes():
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker not ready after {timeout}s; see {logfile}")


@pytest.fixture(scope="module", params=["embedded", "postgres_redis"])
def backend(request, tmp_path_factory, smtp) -> Iterator[Backend]:
    """A migrated database, a broker and a real ``celery worker`` process on them."""
    sink, smtp_url = smtp
    var = tmp_path_factory.mktemp(request.param)
    drop = None
    if request.param == "embedded":
        database_url, broker_url = f"sqlite:///{var / 'newsletter.db'}", ""
    else:
        database_url, drop = _fresh_postgres()
        broker_url = _fresh_redis()
    configure(var, database_url, broker_url, smtp_url)
    from newsletter.config import get_settings

    settings = get_settings()
    settings.ensure_var()
    db.upgrade()
    log = var / "worker.log"
    worker = processes.start_worker(child_env(settings), logfile=log, concurrency=2)
    try:
        wait_ready(log, worker)
        yield Backend(request.param, var, log, sink)
    finally:
        processes.stop(worker)
        db.dispose_engines()
        if drop:
            drop()


def wait_idle(timeout: float = 15) -> None:
    """Let the worker finish what an earlier test left in flight (a late task would act on
    the next test's rows: SQLite reuses ids after a delete)."""
    from sqlalchemy import select

    from newsletter.config import get_settings
    from newsletter.metrics import broker_queue_depth
    from newsletter.models import Delivery

    settings_ = get_settings()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = broker_queue_depth() > 0
        if not busy and not settings_.uses_embedded_broker:
            import redis

            client = redis.Redis.from_url(settings_.broker)
            busy = client.hlen("unacked") > 0
            client.close()
        if not busy:
            with db.session_scope() as session:
                busy = session.scalar(select(Delivery.id).where(
                    Delivery.status == "sending").limit(1)) is not None
        if not busy:
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- the outbox's doorbell

class Doorbell:
    """What the outbox does with the events a test commits (events.set_dispatcher).

    Each call takes effect at once and lasts until the test ends; used as ``with``, it lasts
    until the block ends. Either way the broker's own dispatcher is back afterwards, with no
    "broker down" backoff left behind, even when the test fails.
    """

    def drop(self) -> Doorbell:
        """Events stay undispatched rows: the worker stays out (the relay could still send
        them)."""
        return self.use(lambda *_: False)

    def accept(self) -> Doorbell:
        """Events count as dispatched without a broker: nothing is enqueued."""
        return self.use(lambda *_: True)

    def use(self, fn) -> Doorbell:
        """Any dispatcher: (event id, name, payload) → True if the broker took it; None: the
        broker's own, found through the entry point. (The one place tests swap it.)"""
        from newsletter import events

        events.set_dispatcher(fn)
        return self

    def restore(self) -> None:
        self.use(None)

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


@pytest.fixture
def dispatcher() -> Iterator[Doorbell]:
    """The outbox's dispatcher for one test; the broker's own is back when the test ends."""
    bell = Doorbell()
    bell.restore()  # no backoff from an earlier test's dead broker
    try:
        yield bell
    finally:
        bell.restore()


@pytest.fixture
def fresh(backend) -> Backend:
    """Empty tables and an empty SMTP log for one test."""
    wait_idle()
    with db.session_scope() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        for table in reversed(Base.metadata.sorted_tables):
            # The audit log refuses DELETE on PostgreSQL (a trigger); its owner may truncate.
            if postgres and table.name == "audit_log":
                session.execute(text("TRUNCATE audit_log"))
            else:
                session.execute(table.delete())
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("PRAGMA optimize"))
    backend.smtp.clear()
    return backend


@contextmanager
def live_web(log: Path, port: int | None = None, **env: str) -> Iterator[str]:
    """The real app under uvicorn on ``port`` (default: a free one), with the test's settings
    (plus ``env``); yields its base URL once /healthz answers."""
    import subprocess
    import sys

    import httpx

    from newsletter.config import get_settings

    port = port or free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "newsletter.web.app:app", "--host", "127.0.0.1",
         "--port", str(port)], env={**child_env(get_settings()), **env},
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError(log.read_text())
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # open keep-alive connections can hold it up
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- browser

@pytest.fixture
def browser():
    """Real headless Chromium (Debian's)."""
    if not os.path.exists(CHROMIUM):
        if REQUIRE_SERVERS:
            pytest.fail("Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()



# ---------------------------------------------------------------- forms

def form_token(client) -> str:
    """The signed token of a freshly served subscribe form."""
    import re

    page = client.get("/subscribe").text
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def post_subscribe(client, **fields):
    """POST /subscribe as a browser would: with the form's token."""
    return client.post("/subscribe", data={"form_token": form_token(client), **fields})


def dump_log(backend: Backend) -> str:
    return backend.worker_log.read_text(errors="replace")[-5000:]


# ---------------------------------------------------------------- the newsroom console

EDITOR_PASSWORD = "a long editor password 42"


def add_editor(email: str, role: str = "editor", password: str = EDITOR_PASSWORD) -> int:
    """An editor account straight in the database (what `newsletter editors add` makes)."""
    from newsletter.accounts import editors

    with db.session_scope() as session:
        return editors.add(session, email, role, password).id


def console_client(app=None, ip: str | None = None):
    """A client for /admin over https (the session cookie is Secure), from an address of its
    own (the sign-in throttle counts per address), not following redirects."""
    from fastapi.testclient import TestClient

    from newsletter.web.app import create_app

    ip = ip or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    return TestClient(app or create_app(), base_url="https://testserver",
                      follow_redirects=False, client=(ip, 50000))


def hidden(page: str, name: str = "csrf_token") -> str:
    import re

    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


def sign_in(client, email: str, password: str = EDITOR_PASSWORD, next_: str = "/admin"):
    """Post the sign-in form as a browser would (its pre-session token and cookie)."""
    token = hidden(client.get("/admin/login").text)
    return client.post("/admin/login", data={"email": email, "password": password,
                                             "csrf_token": token, "next": next_})


def csrf_of(client) -> str:
    """The signed-in session's CSRF token, as its pages carry it."""
    return hidden(client.get("/admin").text)


def offer_topics(session, *names: str) -> list:
    """Topics readers may follow, each covering the tag of its name: editors curate what
    the form offers, so a test's readers can follow only what one offered."""
    from newsletter.newsroom import topics

    return [topics.create(session, name)[0] for name in names]


def topics_for(session, slugs) -> list:
    """The topics of these slugs, offering one (named as its tag, or after the slug) for
    each that no editor offered yet: seeding readers, not a test of curation."""
    from sqlalchemy import select

    from newsletter.models import Tag
    from newsletter.newsroom import topics

    found = []
    for slug in slugs:
        tag = session.scalar(select(Tag).where(Tag.slug == slug))
        name = tag.name if tag is not None else slug.replace("-", " ").title()
        found.append(topics.create(session, name, tags=[slug])[0])
    return found
