"""The delivery ledger's moves that planning, sending and the reconciler share: hand
deliveries to the queue, take them back, retry them later, close a finished edition."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from newsletter import events, sql
from newsletter.config import get_settings
from newsletter.models import Delivery, Edition, utcnow
from newsletter.states import OPEN, DeliveryStatus, EditionStatus

MAX_ATTEMPTS = 5


# How _send words a temporary failure it stopped retrying; failure_kind() reads it back.
GAVE_UP = "gave up after"


def finish_if_complete(session: Session, edition_id: int, commit: bool = True) -> bool:
    """Mark a sending edition done once nothing is left open; returns True if it did."""
    still_open = select(Delivery.id).where(Delivery.edition_id == edition_id,
                                           Delivery.status.in_(OPEN)).exists()
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status == EditionStatus.SENDING, ~still_open)
        .values(status=EditionStatus.DONE, finished_at=utcnow())
    )
    if result.rowcount == 1:
        events.record(session, events.EDITION_SENT, edition_id=edition_id)
    if commit:
        session.commit()
    return result.rowcount == 1


def failure_kind(error: str | None) -> str:
    """'temporary' for a delivery that gave up retrying, else 'permanent' (5xx, unsendable)."""
    return "temporary" if (error or "").startswith(GAVE_UP) else "permanent"


def release(session: Session, delivery_ids: Sequence[int], *, requeue: bool,
            holder: str | None = None) -> int:
    """Give claimed deliveries back to the queue with their attempt unspent (no commit).

    With ``holder``, only those it still holds: the reconciler may have taken them back
    (and someone else claimed them) while it was taken for dead."""
    if not delivery_ids:
        return 0
    held = Delivery.status == DeliveryStatus.SENDING
    if holder is not None:
        held = and_(held, Delivery.holder == holder)
    rows = session.execute(
        update(Delivery)
        .where(sql.one_of(session, Delivery.id, delivery_ids), held)
        .values(status=DeliveryStatus.QUEUED, attempts=Delivery.attempts - 1, claimed_at=None,
                holder=None,
                queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    if requeue:
        enqueue(session, rows)
    return len(rows)


def enqueue(session: Session, rows: Sequence[tuple[int, int]]) -> None:
    """Record the events that send (delivery id, edition id) pairs, a batch per event."""
    size = get_settings().batch_size
    by_edition: dict[int, list[int]] = {}
    for delivery_id, edition_id in rows:
        by_edition.setdefault(edition_id, []).append(delivery_id)
    for edition_id, ids in by_edition.items():
        for i in range(0, len(ids), size):
            events.record(session, events.DELIVERIES_QUEUED, edition_id=edition_id,
                          delivery_ids=ids[i:i + size])


def backoff(attempt: int) -> timedelta:
    """Wait before retry ``attempt`` + 1: 1, 2, 4, 8 … minutes (retry_base_s), ±50 %."""
    # Jitter spreads a failed burst so retries do not hit the relay in lockstep.
    base = get_settings().retry_base_s
    return timedelta(seconds=base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))


def requeue_due(session: Session) -> int:
    """Put deliveries whose retry time has come back in the queue; returns how many."""
    # A paused edition's retries wait for resume (which re-enqueues them).
    due = session.execute(
        update(Delivery)
        .where(and_(Delivery.status == DeliveryStatus.RETRY, Delivery.next_attempt_at <= utcnow()),
               Delivery.edition_id.not_in(select(Edition.id).where(Edition.status == EditionStatus.PAUSED)))
        .values(status=DeliveryStatus.QUEUED, queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    enqueue(session, due)
    session.commit()
    return len(due)
