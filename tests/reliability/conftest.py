"""Real processes to break: a scripted SMTP server, Celery workers we can SIGKILL, our own
Redis we can restart, and a pump that plays beat's reconciler from the test process.

Each test gets its own database (and Redis db flushed, or its own redis-server) and its own
worker, so a killed worker's leftovers never reach another test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, processes
from newsletter.config import child_env, get_settings, reload_settings
from newsletter.editions import reconcile
from newsletter.mail.capture import free_port
from newsletter.models import Delivery, Edition, utcnow
from tests.conftest import (
    ADMIN_TOKEN,
    _fresh_postgres,
    _fresh_redis,
    _unavailable,
    configure,
    wait_ready,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A stalled SMTP command gives up after this (?timeout=): far below the task's soft limit
# (1500 s) and Redis's visibility timeout (3600 s), as in production (30 s).
SMTP_TIMEOUT_S = 2
STALL_S = SMTP_TIMEOUT_S + 2
BATCH = 5


# ---------------------------------------------------------------- a relay that misbehaves

class Script:
    """An aiosmtpd handler that misbehaves by recipient and by instruction, and counts
    the Message-IDs it accepted per recipient (a message counts once its DATA arrived).

    Local parts: ``bounce-`` 550 5.1.1 at RCPT; ``full-`` 452 at the first RCPT;
    ``stall-`` the first RCPT stalls past the client's timeout; ``later-`` 451 after the
    first DATA; ``reject-`` 554 after DATA; ``drop-`` the first DATA is taken, then the
    connection is dropped before the reply (the RFC 1047 window); ``defer-`` 451 after
    DATA until ``defer_ok``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delivered: dict[str, list[str]] = defaultdict(list)
        self.tries: dict[tuple[str, str], int] = defaultdict(int)
        self.refuse_connects = 0  # this many next connections get "421" as greeting
        self.down = False  # every RCPT gets 451 (a relay that is sick)
        self.credentials_ok = True
        self.defer_ok = False
        self.hold_at: tuple[str, int] | None = None  # ("rcpt"|"data", nth message overall)
        self.held = threading.Event()
        self.release = threading.Event()
        self.count = {"rcpt": 0, "data": 0}
        self.arrivals: list[float] = []  # time.monotonic() of each accepted DATA

    def reset(self) -> None:
        with self.lock:
            self.delivered.clear()
            self.tries.clear()
            self.refuse_connects, self.down, self.credentials_ok, self.hold_at = 0, False, True, None
            self.defer_ok = False
            self.count = {"rcpt": 0, "data": 0}
            self.arrivals = []
        self.held.clear()
        self.release.set()

    def hold(self, stage: str, nth: int) -> None:
        self.release.clear()
        self.held.clear()
        self.hold_at = (stage, nth)

    async def _maybe_hold(self, stage: str) -> None:
        with self.lock:
            self.count[stage] += 1
            hit = self.hold_at == (stage, self.count[stage])
        if hit:
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)

    def _try(self, stage: str, address: str) -> int:
        with self.lock:
            self.tries[(stage, address)] += 1
            return self.tries[(stage, address)]

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        # Real relays (Postfix, Exim, every ESP) offer PIPELINING and the transport then
        # sends MAIL, RCPT and DATA in one write: the faults below must hit that path.
        # aiosmtpd reads commands one by one from its stream, so it copes with them.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        local = address.split("@")[0]
        n = self._try("rcpt", address)
        if self.down:
            return "451 4.3.0 Relay temporarily unavailable"
        if local.startswith("bounce-"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("full-") and n == 1:
            return "452 4.2.2 Mailbox full"
        if local.startswith("stall-") and n == 1:
            await asyncio.sleep(STALL_S)
        await self._maybe_hold("rcpt")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        address = envelope.rcpt_tos[0]
        local = address.split("@")[0]
        n = self._try("data", address)
        if local.startswith("later-") and n == 1:
            return "451 4.3.0 Try again later"
        if local.startswith("defer-") and not self.defer_ok:
            return "451 4.3.0 Deferred"
        if local.startswith("reject-"):
            return "554 5.6.0 Message refused"
        data = envelope.original_content or envelope.content
        message_id = message_from_bytes(data, policy=policy.default)["Message-ID"]
        with self.lock:
            self.delivered[address].append(message_id)
            self.arrivals.append(time.monotonic())
        if local.startswith("drop-") and n == 1:
            server.transport.close()
            return "250 OK"  # never reaches the client
        await self._maybe_hold("data")
        return "250 OK"

    def per_second(self) -> list[int]:
        """Messages accepted in each second since the first one."""
        with self.lock:
            stamps = list(self.arrivals)
        if not stamps:
            return []
        counts = [0] * (int(stamps[-1] - stamps[0]) + 1)
        for t in stamps:
            counts[int(t - stamps[0])] += 1
        return counts

    def copies(self) -> dict[str, list[str]]:
        with self.lock:
            return {k: list(v) for k, v in self.delivered.items()}

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        return AuthResult(success=self.credentials_ok, handled=False)


class _SMTP(SMTP):
    def connection_made(self, transport) -> None:
        script: Script = self.event_handler
        with script.lock:
            refuse = script.refuse_connects > 0
            script.refuse_connects -= refuse
        self._refused = refuse
        if refuse:
            transport.write(b"421 4.7.0 Too busy, try again later\r\n")
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        if not getattr(self, "_refused", False):
            super().connection_lost(error)


class _Controller(Controller):
    def factory(self):
        return _SMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture(scope="session")
def relay() -> Iterator[tuple[Script, int]]:
    script = Script()
    port = free_port("127.0.0.1")
    controller = _Controller(script, hostname="127.0.0.1", port=port,
                             authenticator=script.authenticate, auth_require_tls=False)
    controller.start()
    yield script, port
    controller.stop()


# ---------------------------------------------------------------- our own Redis

class OwnRedis:
    """A redis-server of our own (the shared one on 6379 must never be restarted)."""

    def __init__(self, var: Path) -> None:
        if shutil.which("redis-server") is None:
            _unavailable("redis-server is not installed (the broker restart tests start one)")
        self.port = free_port("127.0.0.1")
        self.var = var
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.var)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError("own redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- the rig

@dataclass
class Rig:
    name: str
    var: Path
    script: Script
    smtp_url: str
    workers: list[subprocess.Popen] = field(default_factory=list)
    redis: OwnRedis | None = None

    def start_worker(self, concurrency: int = 1, node: str | None = None) -> subprocess.Popen:
        """A worker; with ``node``, a worker node as another host would run it: its own
        Celery node name, var directory (``var/<node>``) and metrics port."""
        env = child_env(get_settings())
        if node:
            env.update(NEWSLETTER_VAR_DIR=str(self.node_var(node)),
                       NEWSLETTER_WORKER_METRICS_PORT=str(free_port("127.0.0.1")))
        log = self.var / f"worker-{node or len(self.workers)}.log"
        proc = processes.start_worker(env, logfile=log, concurrency=concurrency,
                                      node=node and f"{node}@%h")
        wait_ready(log, proc)
        self.workers.append(proc)
        return proc

    def node_var(self, node: str) -> Path:
        return self.var / node

    def kill_worker(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool: no shutdown, no acks, nothing recorded."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.var.glob("*.log")))

    def client(self) -> TestClient:
        from newsletter.web.app import create_app

        return TestClient(create_app())

    def seed(self, emails: list[str], tag: str = "Syria", title: str = "Aid reaches Idlib"
             ) -> None:
        """Active readers of ``tag`` (prior consent) and one fresh article on it."""
        client = self.client()
        r = client.post("/api/articles", headers=AUTH, json={
            "url": "https://news.example/a/" + title.lower().replace(" ", "-"),
            "title": title, "summary": "Convoys crossed at dawn.", "tags": [tag]})
        assert r.status_code == 201, r.text
        assert client.post("/api/topics", headers=AUTH,  # what the editors offer readers
                           json={"name": tag}).status_code in (200, 201)
        r = client.post("/api/subscribers", headers=AUTH, json=[
            {"email": e, "topics": [tag.lower()], "frequency": "daily",
             "consented_at": utcnow().isoformat()} for e in emails])
        assert r.status_code == 200 and r.json()["created"] == len(emails), r.text

    def request_edition(self) -> int:
        r = self.client().post("/api/editions", headers=AUTH, json={"frequency": "daily"})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def settle(self, edition_id: int, *, lease: float | None = 30, timeout: float = 120,
               until: tuple[str, ...] = ("done",), every: float = 0.3) -> dict:
        """Play beat: run the reconciler every ``every`` seconds until the edition reaches
        a status in ``until``. ``lease=None``: the operators' default lease."""
        from newsletter.editions import reports

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with db.session_scope() as session:
                reconcile.tick(session, lease=None if lease is None else timedelta(seconds=lease))
                report = reports.report(session, edition_id)
            if report["status"] in until:
                return report
            time.sleep(every)
        raise AssertionError(f"edition {edition_id} stuck: {report}\n{self.logs()}")

    def deliveries(self, edition_id: int) -> list[Delivery]:
        with db.session_scope() as session:
            rows = session.scalars(select(Delivery).where(Delivery.edition_id == edition_id)
                                   .order_by(Delivery.id)).all()
            session.expunge_all()
            return list(rows)

    def edition(self, edition_id: int) -> Edition:
        with db.session_scope() as session:
            e = session.get(Edition, edition_id)
            session.expunge(e)
            return e


def copies_by_reader(script: Script, emails: list[str]) -> dict[str, int]:
    """Copies each reader got; asserts the copies of one reader share one Message-ID."""
    got = script.copies()
    for email in emails:
        assert len(set(got.get(email, []))) <= 1, f"{email} got different messages: {got[email]}"
    return {email: len(got.get(email, [])) for email in emails}


def _rig(request, tmp_path: Path, relay, *, own_redis: bool, smtp_auth: bool = False
         ) -> Iterator[Rig]:
    script, port = relay
    script.reset()
    saved = dict(os.environ)
    drop, redis_, rig = None, None, None
    try:
        if request.param == "embedded":
            database_url, broker_url = f"sqlite:///{tmp_path / 'newsletter.db'}", ""
        else:
            database_url, drop = _fresh_postgres()
            if own_redis:
                redis_ = OwnRedis(tmp_path)
                redis_.start()
                broker_url = redis_.url
            else:
                broker_url = _fresh_redis()
        user = "editor:secret@" if smtp_auth else ""
        # The test relay offers AUTH without TLS: only ?insecure=true lets credentials go.
        insecure = "&insecure=true" if smtp_auth else ""
        smtp_url = f"smtp://{user}127.0.0.1:{port}?timeout={SMTP_TIMEOUT_S}{insecure}"
        configure(tmp_path, database_url, broker_url, smtp_url)
        # Small batches so an edition has several; quick retries; the worker's own relay
        # is beat's job, which the test plays (Rig.settle) with the lease it wants.
        os.environ.update(NEWSLETTER_BATCH_SIZE=str(BATCH), NEWSLETTER_RETRY_BASE_S="0.5",
                          NEWSLETTER_LOG_FORMAT="text")
        reload_settings().ensure_var()
        db.upgrade()
        rig = Rig(request.param, tmp_path, script, smtp_url, redis=redis_)
        yield rig
    finally:
        script.release.set()
        for proc in rig.workers if rig else []:
            processes.stop(proc, timeout=5, graceful=False)
        db.dispose_engines()
        if redis_:
            redis_.stop()
        if drop:
            drop()
        os.environ.clear()
        os.environ.update(saved)
        reload_settings()


@pytest.fixture(params=["embedded", "postgres_redis"])
def rig(request, tmp_path, relay) -> Iterator[Rig]:
    """A fresh database and broker; start workers with ``rig.start_worker()``."""
    yield from _rig(request, tmp_path, relay, own_redis=False)


@pytest.fixture(params=["postgres_redis"])
def redis_rig(request, tmp_path, relay) -> Iterator[Rig]:
    """PostgreSQL and a redis-server of the test's own, to stop and restart."""
    yield from _rig(request, tmp_path, relay, own_redis=True)


@pytest.fixture(params=["embedded", "postgres_redis"])
def auth_rig(request, tmp_path, relay) -> Iterator[Rig]:
    """As ``rig``, but the workers log in to the relay (which may refuse them)."""
    yield from _rig(request, tmp_path, relay, own_redis=False, smtp_auth=True)
