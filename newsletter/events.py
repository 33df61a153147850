"""Outbox events: recorded in the cause's transaction, dispatched after it commits.

The database is the ledger and the broker only a doorbell: an event is a row first. When
the transaction commits, the events it wrote are handed to the dispatcher (in production
``workers.dispatch``, found through the ``newsletter.dispatch`` entry point so that this
package never imports ``workers``). If the broker is down the rows stay undispatched and
the periodic relay (``dispatch_pending``) sends them later; consumers are idempotent, so
an event dispatched twice does no harm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from newsletter.models import OutboxEvent, utcnow

log = logging.getLogger(__name__)

READER_SUBSCRIBED = "reader.subscribed"  # {reader_id}: send the confirmation email
READER_CONFIRMED = "reader.confirmed"  # {reader_id}: send the welcome email
EDITION_REQUESTED = "edition.requested"  # {edition_id}: plan it
DELIVERIES_QUEUED = "deliveries.queued"  # {edition_id, delivery_ids}: send them
ARTICLE_PUBLISHED = "article.published"  # {article_id}: open or join an alert window
ALERT_WINDOW_OPENED = "alert.window_opened"  # {edition_id, due_at}: close it at due_at

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


def record(session: Session, name: str, **payload: Any) -> OutboxEvent:
    """Write an event in the session's transaction; it is dispatched once that commits."""
    event = OutboxEvent(name=name, payload=payload)
    session.add(event)
    session.flush()
    session.info.setdefault(_PENDING, []).append((event.id, name, payload))
    return event


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
    done = []
    for event_id, name, payload in events:
        try:
            if dispatcher(event_id, name, payload):
                done.append(event_id)
        except Exception:  # the broker is down: the relay will retry from the table
            _broker_down_until = time.monotonic() + BROKER_BACKOFF_S
            log.warning("dispatch of event %s (%s) failed; left for the relay", event_id, name,
                        exc_info=True)
            break
    else:
        _broker_down_until = 0.0
    return done


def _mark_dispatched(session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(ids))
            .values(dispatched_at=utcnow(), attempts=OutboxEvent.attempts + 1)
        )


def after_commit(session: Session) -> None:
    events = session.info.pop(_PENDING, None)
    if not events:
        return
    done = _dispatch(events)
    if done:
        # A separate short transaction: the caller's has just ended and must not reopen.
        with Session(bind=session.get_bind()) as s, s.begin():
            _mark_dispatched(s, done)


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
