"""Outbox events: recorded in the cause's transaction, dispatched after it commits.

The database is the ledger and the broker only a doorbell: an event is a row first. When
the transaction commits, the events it wrote are handed to the dispatcher (in production
``workers.dispatch``, found through the ``newsletter.dispatch`` entry point so that this
package never imports ``workers``). If the broker is down the rows stay undispatched and
the periodic relay (``dispatch_pending``) sends them later; consumers are idempotent, so
an event dispatched twice does no harm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.orm import Session

from newsletter import sql
from newsletter.models import OutboxEvent, WebhookPending, utcnow

log = logging.getLogger(__name__)

READER_SUBSCRIBED = "reader.subscribed"  # {reader_id}: send the confirmation email
READER_CONFIRMED = "reader.confirmed"  # {reader_id}: send the welcome email
DATA_LINK_REQUESTED = "reader.data_link_requested"  # {reader_id}: email the link to their data
EDITION_REQUESTED = "edition.requested"  # {edition_id}: plan it
DELIVERIES_QUEUED = "deliveries.queued"  # {edition_id, delivery_ids}: send them
ARTICLE_PUBLISHED = "article.published"  # {article_id}: open or join an alert window
ALERT_WINDOW_OPENED = "alert.window_opened"  # {edition_id, due_at}: close it at due_at
READERS_IMPORT_REQUESTED = "readers.import_requested"  # {import_id}: run a console CSV import
# Facts told to the site's own systems through outgoing webhooks (newsletter.webhooks). The
# payloads name readers by id only: a receiver asks the API if it needs more.
READER_UNSUBSCRIBED = "reader.unsubscribed"  # {reader_id, method, edition_id}
READER_BOUNCED = "reader.bounced"  # {reader_id, kind: bounce|complaint, edition_id}
EDITION_SENT = "edition.sent"  # {edition_id}: nothing left to send
EDITION_PAUSED = "edition.paused"  # {edition_id, reason}: a systemic failure stopped it
ARTICLE_WITHDRAWN = "article.withdrawn"  # {article_id, url}

# The events an endpoint may ask for, in the order the console lists them. Each is also
# written to webhook_pending in its own transaction, for the fan-out (webhooks/fanout.py).
WEBHOOK_EVENTS = (EDITION_SENT, EDITION_PAUSED, READER_CONFIRMED, READER_UNSUBSCRIBED,
                  READER_BOUNCED, ARTICLE_WITHDRAWN)

# (event id, name, payload) → True if the broker accepted it.
Dispatcher = Callable[[int, str, dict[str, Any]], bool]
_dispatcher: Dispatcher | None = None
_PENDING = "newsletter.outbox_pending"


def set_dispatcher(fn: Dispatcher | None) -> None:
    """Override the dispatcher (None restores discovery through the entry point)."""
    global _dispatcher, _broker_down_until
    _dispatcher = fn
    _broker_down_until = 0.0


def _get_dispatcher() -> Dispatcher | None:
    global _dispatcher
    if _dispatcher is None:
        for ep in entry_points(group="newsletter.dispatch"):
            _dispatcher = ep.load()
            break
    return _dispatcher


# Built once and run with parameters (an event is written by every subscribe).
_INSERT = insert(OutboxEvent.__table__).returning(OutboxEvent.__table__.c.id)
_PEND = insert(WebhookPending.__table__)


def record(session: Session, name: str, **payload: Any) -> int:
    """Write an event in the session's transaction; it is dispatched once that commits.

    Returns the event's id. A Core insert: the row is never read back as an object.
    """
    event_id = session.execute(_INSERT, {"name": name, "payload": payload,
                                         "created_at": utcnow(), "attempts": 0}).scalar_one()
    if name in WEBHOOK_EVENTS:
        session.execute(_PEND, {"event_id": event_id})
    recorded(session, event_id, name, payload)
    return event_id


def recorded(session: Session, event_id: int, name: str, payload: dict[str, Any]) -> None:
    """Dispatch after commit an event the caller wrote itself (subscribe: in its one
    statement) with this id, name and payload."""
    session.info.setdefault(_PENDING, []).append((event_id, name, payload))


def pending(session: Session) -> list[tuple[int, str, dict[str, Any]]]:
    """The events recorded in the session's open transaction: (id, name, payload), in order;
    they are dispatched once it commits."""
    return list(session.info.get(_PENDING, []))


def record_many(session: Session, name: str, payloads: Sequence[dict[str, Any]]) -> None:
    """``record`` for many events of one kind in a few statements (bulk imports)."""
    if not payloads:
        return
    now = utcnow()
    table = OutboxEvent.__table__
    ids = session.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True),
        [{"name": name, "payload": p, "created_at": now, "attempts": 0} for p in payloads],
    ).scalars().all()
    if name in WEBHOOK_EVENTS:
        session.execute(_PEND, [{"event_id": event_id} for event_id in ids])
    session.info.setdefault(_PENDING, []).extend(
        (event_id, name, p) for event_id, p in zip(ids, payloads, strict=True))


# After a failed dispatch, requests stop trying the broker for this long and leave their
# events to the relay: a reader's subscribe must not wait on a dead broker's connect
# timeout every time, and the rows are safe in the table meanwhile.
BROKER_BACKOFF_S = 10.0
_broker_down_until = 0.0


def _dispatch(events: Sequence[tuple[int, str, dict[str, Any]]], *,
              relay: bool = False) -> list[int]:
    global _broker_down_until
    dispatcher = _get_dispatcher()
    if dispatcher is None or (not relay and time.monotonic() < _broker_down_until):
        return []
    done: list[int] = []
    # A dispatcher may publish many events as one batch (workers.dispatch: one pipelined
    # write to Redis); then none counts as sent until the batch has left.
    batch = getattr(dispatcher, "batch", None) if len(events) > 1 else None
    current: tuple[int, str] | None = None
    try:
        with batch() if batch is not None else contextlib.nullcontext():
            for event_id, name, payload in events:
                current = (event_id, name)
                if dispatcher(event_id, name, payload):
                    done.append(event_id)
            current = None
    except Exception:  # the broker is down: the relay will retry from the table
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_S
        what = f"event {current[0]} ({current[1]})" if current else f"{len(done)} events"
        log.warning("dispatch of %s failed; left for the relay", what, exc_info=True)
        # In a batch nothing is known to have arrived; alone, those before the failure did.
        return [] if batch is not None else done
    _broker_down_until = 0.0
    return done


def _mark_dispatched(session: Session, ids: list[int]) -> None:
    if ids:
        table = OutboxEvent.__table__  # Core: the ORM's bulk UPDATE costs more than its SQL
        session.execute(
            update(table)
            .where(sql.one_of(session, table.c.id, ids))
            .values(dispatched_at=utcnow(), attempts=table.c.attempts + 1)
        )


def _engine_of(bind: Engine | Connection) -> Engine:
    return bind.engine if isinstance(bind, Connection) else bind


def after_commit(session: Session) -> None:
    events = session.info.pop(_PENDING, None)
    if not events:
        return
    engine = _engine_of(session.get_bind())
    if _background is not None:
        _background.put(engine, events)
        return
    _dispatch_and_mark(engine, events)


def _dispatch_and_mark(engine: Engine, events: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
    done = _dispatch(events)
    if done:
        # A separate short transaction: the caller's has just ended and must not reopen.
        with Session(bind=engine) as s, s.begin():
            _mark_dispatched(s, done)


class _Background:
    """Dispatches committed events from one thread of this process, in batches.

    Why: a web request that dispatched its own event paid, before it could answer, for the
    broker publish and a second transaction to mark the event dispatched: a second commit,
    so a second wait for PostgreSQL's WAL flush, per subscribe (the subscribe benchmark
    spent about half its time waiting there). Here the request only hands its event ids
    over; the thread publishes whatever has gathered and marks the lot in one statement.
    The rows stay the ledger: events in hand when the process dies are sent by the relay.
    """

    # Events marked dispatched in one UPDATE: bounded so that one statement stays short
    # under a burst (a second's subscriptions at the benchmark's rate fit in one).
    BATCH = 500
    GATHER_S = 0.02

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pid = 0
        self._lock = threading.Lock()

    def put(self, engine: Engine, events: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        self._ensure_thread()
        self._queue.put((engine, list(events)))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was handed over before this call is dispatched (shutdown, tests)."""
        if self._pid != os.getpid():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _ensure_thread(self) -> None:
        # Per process: a fork inherits the object but not its thread.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()
                    threading.Thread(target=self._run, name="outbox-dispatch",
                                     daemon=True).start()
                    self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            # What arrives within GATHER_S joins the batch: at 300 subscribes a second a
            # batch of one or two cost a transaction (and a WAL flush) and a broker write
            # each, 28 % of the web process's CPU; a reader's confirmation waits 20 ms more.
            deadline = time.monotonic() + self.GATHER_S
            while len(items) < self.BATCH and not isinstance(items[-1], threading.Event):
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            by_engine: dict[Engine, list] = {}
            waiters = []
            for item in items:
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    by_engine.setdefault(item[0], []).extend(item[1])
            for engine, events in by_engine.items():
                try:
                    _dispatch_and_mark(engine, events)
                except Exception:  # the database is down: the relay sends them later
                    log.warning("marking %d events dispatched failed; left for the relay",
                                len(events), exc_info=True)
            for waiter in waiters:
                waiter.set()


_background: _Background | None = None


def dispatch_in_background(enabled: bool = True) -> None:
    """Hand committed events to a thread of this process instead of dispatching them in the
    committing thread (the web server turns this on; workers and the CLI dispatch inline)."""
    global _background
    if enabled and _background is None:
        _background = _Background()
    elif not enabled and _background is not None:
        _background.flush()
        _background = None


def flush_background(timeout: float = 5.0) -> bool:
    """Wait for events handed to the background thread so far; True if they were sent."""
    return _background.flush(timeout) if _background is not None else True


def after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def dispatch_pending(session: Session, older_than: timedelta = timedelta(seconds=5)) -> int:
    """Dispatch events that were never dispatched (broker down, process died); return how many.

    Only events older than ``older_than`` are taken, so the relay does not race the
    after-commit dispatch of a transaction that has just committed.
    """
    rows = session.execute(
        select(OutboxEvent.id, OutboxEvent.name, OutboxEvent.payload)
        .where(OutboxEvent.dispatched_at.is_(None), OutboxEvent.created_at < utcnow() - older_than)
        .order_by(OutboxEvent.id)
        .limit(1000)
    ).all()
    done = _dispatch([tuple(r) for r in rows], relay=True)
    _mark_dispatched(session, done)
    return len(done)


def install(session_class: type[Session] = Session) -> None:
    """Hook dispatch into every session's commit (idempotent)."""
    from sqlalchemy import event

    if not event.contains(session_class, "after_commit", after_commit):
        event.listen(session_class, "after_commit", after_commit)
        event.listen(session_class, "after_rollback", after_rollback)


install()
