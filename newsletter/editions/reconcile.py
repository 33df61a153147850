"""The reconciler: rebuilds the queue from the database, and the operator's pause levers.

Beat runs :func:`tick` every ``relay_interval_s``. It dispatches outbox events nobody
dispatched, puts due retries back in the queue, takes back deliveries a dead worker left
in 'sending', and re-enqueues queued ones whose task was lost (broker restarted empty).
Every step is an idempotent UPDATE … RETURNING, so two beats (or a tick racing a worker)
do no harm: a delivery is sent only by whoever claims it queued → sending.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.config import get_settings
from newsletter.editions import deliveries
from newsletter.errors import EditionNotFound, NotPaused
from newsletter.models import Delivery, Edition, utcnow
from newsletter.states import SENDABLE, UNSENT

log = logging.getLogger(__name__)


def tick(session: Session, lease: timedelta | None = None) -> dict[str, int]:
    """One reconciler pass; how many events, retries, reclaimed and lost deliveries it moved."""
    lease = lease if lease is not None else timedelta(seconds=get_settings().delivery_lease_s)
    done = {"events": events.dispatch_pending(session)}
    done["retries"] = deliveries.requeue_due(session)
    done["reclaimed"] = reclaim_stale(session, lease)
    done["lost"] = requeue_lost(session, lease)
    if any(done.values()):
        log.info("reconciled", extra=done)
    return done


def reclaim_stale(session: Session, lease: timedelta) -> int:
    """Deliveries 'sending' for longer than ``lease`` (their worker died) go back to 'queued'.

    The attempt stays spent and the Message-ID stays: the dead worker may have handed the
    message to the relay before it could record it, so a resend can be a second copy.
    ``reclaims`` counts these per delivery.
    """
    now = utcnow()
    rows = session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < now - lease,
               Delivery.edition_id.in_(select(Edition.id).where(Edition.status.in_(SENDABLE))))
        .values(status="queued", claimed_at=None, queued_at=now, reclaims=Delivery.reclaims + 1)
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    # A paused edition's stale rows go back too, but wait there for resume.
    session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < now - lease)
        .values(status="queued", claimed_at=None, queued_at=now, reclaims=Delivery.reclaims + 1)
    )
    deliveries.enqueue(session, rows)
    session.commit()
    if rows:
        log.warning("reclaimed deliveries from a dead worker", extra={"count": len(rows)})
    return len(rows)


def requeue_lost(session: Session, lease: timedelta) -> int:
    """Re-enqueue queued deliveries of sending editions untouched for ``lease``."""
    now = utcnow()
    since = now - lease
    rows = session.execute(
        update(Delivery)
        .where(Delivery.status == "queued",
               or_(Delivery.queued_at < since,
                   and_(Delivery.queued_at.is_(None), Delivery.created_at < since)),
               Delivery.edition_id.in_(select(Edition.id).where(Edition.status.in_(SENDABLE))))
        # Stamped so a long backlog is re-enqueued once per lease, not on every tick.
        .values(queued_at=now)
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    deliveries.enqueue(session, rows)
    session.commit()
    return len(rows)


def resume(session: Session, edition_id: int) -> dict[str, Any]:
    """Take a paused edition back to 'sending' and re-enqueue everything it has queued."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    if edition.status != "paused":
        raise NotPaused(f"edition {edition_id} is {edition.status}, not paused")
    edition.status, edition.error = "sending", None
    rows = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(UNSENT))
        .values(status="queued", queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    deliveries.enqueue(session, rows)
    session.commit()
    deliveries.finish_if_complete(session, edition_id)
    log.info("edition resumed", extra={"edition_id": edition_id, "queued": len(rows)})
    return {"id": edition_id, "status": "sending", "queued": len(rows)}


def requeue_dead(session: Session, edition_id: int) -> dict[str, Any]:
    """Send the edition's dead letter (gave up after temporary failures) again."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    rows = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status == "failed",
               Delivery.failure == "temporary")
        .values(status="queued", failure=None, attempts=0, queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    if rows and edition.status == "done":
        edition.status, edition.finished_at = "sending", None
    if edition.status != "paused":
        deliveries.enqueue(session, rows)
    session.commit()
    log.info("dead letter requeued", extra={"edition_id": edition_id, "queued": len(rows)})
    return {"id": edition_id, "status": edition.status, "requeued": len(rows)}
