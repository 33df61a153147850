"""Who holds a claim: a sending process's identity, its heartbeat and its journal.

A batch claims its deliveries (queued → sending) in the name of its process, a
:class:`Holder`. While the batch runs, a thread of its own beats the holder's row in
``claim_holders`` every ``holder_heartbeat_s``; a holder silent for ``holder_timeout_s`` is
gone (SIGKILL, OOM, a lost machine), and the reconciler takes back its deliveries.

Between two recordings of the batch's outcomes, each message the relay accepted is written
at once to the holder's journal, cheaply (no database commit): the reconciler reads it
before taking a dead holder's deliveries back, so those count as sent and only the message
in flight when the process died (RFC 1047's window) can go out twice. The journal is a
Redis list when the broker is Redis (readable from any machine; each RPUSH is written to the
socket and its reply read later, so a message costs one send() and no round trip), else an
append-only file under VAR_DIR written unbuffered (one write() a message; the reconciler runs
on the same machine with the embedded broker).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from newsletter.config import Settings, get_settings
from newsletter.models import ClaimHolder, utcnow

log = logging.getLogger(__name__)

_KEY = "newsletter:journal:"


class Journal(Protocol):
    def sent(self, delivery_id: int) -> None: ...

    def clear(self) -> None: ...


class FileJournal:
    """One line per accepted message, appended with a bare write(): in the kernel once it
    returns, so it survives the process (not the machine)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def sent(self, delivery_id: int) -> None:
        os.write(self._fd, b"%d\n" % delivery_id)

    def clear(self) -> None:
        os.ftruncate(self._fd, 0)


class RedisJournal:
    """RPUSH per accepted message on a connection of its own, replies read at ``clear``."""

    def __init__(self, url: str, key: str) -> None:
        import redis

        # Short: a Redis that does not answer must not hold up the send for long.
        self._pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=1)
        self._conn = self._pool.get_connection()
        self._key = key
        self._unread = 0

    def sent(self, delivery_id: int) -> None:
        self._conn.send_command("RPUSH", self._key, delivery_id)
        self._unread += 1

    def clear(self) -> None:
        self._conn.send_command("DEL", self._key)
        self._unread += 1
        while self._unread:
            self._conn.read_response()
            self._unread -= 1


class Holder:
    """This process as the holder of its claims: host, pid and a nonce (a reused pid, or a
    process forked from this one, is somebody else)."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.id = f"{socket.gethostname()[:80]}:{self.pid}:{secrets.token_hex(4)}"
        self.settings = settings
        self._journal: Journal | None = None
        self._journal_failed = False  # until the next recording: no retry per message
        self.evicted = threading.Event()  # the reconciler declared us gone: stop sending
        self.beat_ok = time.monotonic()  # the last time the database heard from us

    def sent(self, delivery_id: int) -> None:
        """Journal a message the relay accepted (before its outcome is recorded)."""
        if self._journal_failed:
            return
        try:
            if self._journal is None:
                if self.settings.uses_embedded_broker:
                    self._journal = FileJournal(journal_path(self.settings, self.id))
                else:
                    self._journal = RedisJournal(self.settings.broker, _KEY + self.id)
            self._journal.sent(delivery_id)
        except Exception:
            # Without a journal a crash costs what it did before (the unrecorded messages
            # go out again); the message itself was sent and is recorded as usual.
            log.warning("could not journal a sent message", exc_info=True,
                        extra={"delivery_id": delivery_id})
            self._journal, self._journal_failed = None, True

    def recorded(self) -> None:
        """The outcomes so far are in the database: the journal can start afresh."""
        self._journal_failed = False
        if self._journal is None:
            return
        try:
            self._journal.clear()
        except Exception:
            log.warning("could not clear the journal", exc_info=True)
            self._journal = None

    def may_send(self) -> bool:
        """Whether the reconciler still takes us for alive, for sure: not evicted, and heard
        from within half the timeout (after a stall, a beat may not have told us yet)."""
        return (not self.evicted.is_set()
                and time.monotonic() - self.beat_ok < self.settings.holder_timeout_s / 2)

    def register(self, session: Session) -> None:
        """Say (in the claim's transaction) that this holder is alive."""
        self.evicted.clear()
        self.beat_ok = time.monotonic()
        now = utcnow()
        if not session.execute(update(ClaimHolder).where(ClaimHolder.id == self.id)
                               .values(beat_at=now)).rowcount:
            session.execute(insert(ClaimHolder).values(id=self.id, started_at=now, beat_at=now))

    @contextmanager
    def beating(self, engine: Engine) -> Iterator[None]:
        """Beat the holder's row from a thread while the block (a batch) runs."""
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(engine, stop), daemon=True,
                                  name="claim-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _beat(self, engine: Engine, stop: threading.Event) -> None:
        every = self.settings.holder_heartbeat_s
        while not stop.wait(every):
            sent_at = time.monotonic()
            try:
                with engine.begin() as conn:
                    alive = conn.execute(update(ClaimHolder).where(ClaimHolder.id == self.id)
                                         .values(beat_at=utcnow())).rowcount
            except Exception:
                # The next beat may get through; enough missed ones and we are taken for dead.
                log.warning("claim heartbeat failed", exc_info=True)
                continue
            if alive:
                self.beat_ok = sent_at
            else:
                log.error("this process was taken for dead and its deliveries taken back; "
                          "the batch stops", extra={"holder": self.id})
                self.evicted.set()


_current: Holder | None = None


def current() -> Holder:
    """This process's holder (a new one after a fork or a change of settings)."""
    global _current
    settings = get_settings()
    if _current is None or _current.pid != os.getpid() or _current.settings is not settings:
        _current = Holder(settings)
    return _current


def journal_path(settings: Settings, holder_id: str) -> Path:
    return settings.var_dir.resolve() / "journal" / (re.sub(r"[^\w.-]", "_", holder_id) + ".ids")


def dead(session: Session) -> list[str]:
    """The holders whose heartbeat stopped more than ``holder_timeout_s`` ago (a process
    beats only while it runs a batch, so an idle one is here too, holding nothing)."""
    cutoff = utcnow() - timedelta(seconds=get_settings().holder_timeout_s)
    return list(session.scalars(select(ClaimHolder.id).where(ClaimHolder.beat_at < cutoff)))


def read_journal(holder_id: str) -> set[int]:
    """What a (dead) holder's journal says the relay accepted."""
    settings = get_settings()
    if settings.uses_embedded_broker:
        path = journal_path(settings, holder_id)
        try:
            return {int(line) for line in path.read_text().split()}
        except FileNotFoundError:
            return set()
    import redis

    client = redis.Redis.from_url(settings.broker, socket_timeout=5)
    return {int(v) for v in client.lrange(_KEY + holder_id, 0, -1)}


def forget(session: Session, holder_id: str) -> bool:
    """Delete a holder's row if it is still silent (no commit); whether it did. A beat the
    holder still sends afterwards finds no row: it knows it was taken for dead."""
    cutoff = utcnow() - timedelta(seconds=get_settings().holder_timeout_s)
    return bool(session.execute(delete(ClaimHolder).where(
        ClaimHolder.id == holder_id, ClaimHolder.beat_at < cutoff)).rowcount)


def drop_journal(holder_id: str) -> None:
    settings = get_settings()
    if settings.uses_embedded_broker:
        journal_path(settings, holder_id).unlink(missing_ok=True)
    else:
        import redis

        redis.Redis.from_url(settings.broker, socket_timeout=5).delete(_KEY + holder_id)


_EPOCH = "newsletter:broker-epoch"


def broker_marked() -> bool:
    """Whether the broker still holds the mark set after its last loss was repaired."""
    settings = get_settings()
    if settings.uses_embedded_broker:
        return (settings.broker_dir / "epoch").exists()
    import redis

    return bool(redis.Redis.from_url(settings.broker, socket_timeout=5).exists(_EPOCH))


def mark_broker() -> None:
    settings = get_settings()
    if settings.uses_embedded_broker:
        settings.broker_dir.mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "epoch").write_text(utcnow().isoformat())
    else:
        import redis

        redis.Redis.from_url(settings.broker, socket_timeout=5).set(_EPOCH, utcnow().isoformat())
