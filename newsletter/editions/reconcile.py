"""The reconciler: rebuilds the queue from the database, and the operator's pause levers.

Beat runs :func:`tick` every ``relay_interval_s``. It dispatches outbox events nobody
dispatched, puts due retries back in the queue, takes back deliveries a dead worker left
in 'sending', and re-enqueues queued ones whose task was lost (broker restarted empty).

How fast (the defaults):
- a sending process that dies: its heartbeat (every 5 s, ``holder_heartbeat_s``) stops; at
  the first pass after ``holder_timeout_s`` (30 s) of silence its deliveries go back to the
  queue, those its journal says the relay accepted counted as sent. Within ~40 s of the kill.
- a broker that lost its queue (Redis restarted without its data): the broker's epoch mark
  is gone, so the next pass re-enqueues every queued delivery of a sending edition once and
  marks the broker again. Within one interval (10 s) of the broker answering.
- anything else left behind (a claim from before holders existed, a holder whose row is
  missing, a task lost without the broker losing its mark): the lease (40 min), as before.
- a scheduled edition's wave (editions/waves.py): its held deliveries go to the queue at
  the first pass after their time, once; the passes above leave held ones alone.
Every step is an idempotent UPDATE … RETURNING, so two beats (or a tick racing a worker)
do no harm: a delivery is sent only by whoever claims it queued → sending.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, false, not_, or_, select, update
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.config import get_settings
from newsletter.editions import claims, deliveries, waves
from newsletter.errors import Conflict, EditionNotFound, NotPaused
from newsletter.models import Delivery, Edition, utcnow
from newsletter.states import SENDABLE, UNSENT, DeliveryStatus, EditionStatus

log = logging.getLogger(__name__)


def tick(session: Session, lease: timedelta | None = None) -> dict[str, int]:
    """One reconciler pass; how many events, retries, reclaimed and lost deliveries it moved."""
    lease = lease if lease is not None else timedelta(seconds=get_settings().delivery_lease_s)
    done = {"events": events.dispatch_pending(session)}
    done["retries"] = deliveries.requeue_due(session)
    done["waves"] = waves.release_due(session)
    done["orphaned"] = reclaim_orphaned(session)
    done["reclaimed"] = reclaim_stale(session, lease)
    done["broker_lost"] = requeue_after_broker_loss(session)
    done["lost"] = requeue_lost(session, lease)
    if any(done.values()):
        log.info("reconciled", extra=done)
    return done


def reclaim_stale(session: Session, lease: timedelta) -> int:
    """Deliveries 'sending' for longer than ``lease`` (their worker died) go back to 'queued'.

    The fallback when no heartbeat tells (claims from before holders existed, a holder
    row that went missing). What their holder's journal names as accepted counts as sent.

    The attempt stays spent and the Message-ID stays: the dead worker may have handed the
    message to the relay before it could record it, so a resend can be a second copy.
    ``reclaims`` counts these per delivery.
    """
    now = utcnow()
    finished = _record_journaled(session, and_(Delivery.status == DeliveryStatus.SENDING,
                                               Delivery.claimed_at < now - lease))
    rows = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_at < now - lease,
               Delivery.edition_id.in_(select(Edition.id).where(Edition.status.in_(SENDABLE))))
        .values(status=DeliveryStatus.QUEUED, claimed_at=None, holder=None, queued_at=now,
                reclaims=Delivery.reclaims + 1)
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    # A paused edition's stale rows go back too, but wait there for resume.
    session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_at < now - lease)
        .values(status=DeliveryStatus.QUEUED, claimed_at=None, holder=None, queued_at=now,
                reclaims=Delivery.reclaims + 1)
    )
    deliveries.enqueue(session, rows)
    session.commit()
    for edition_id in finished:
        deliveries.finish_if_complete(session, edition_id)
    if rows:
        log.warning("reclaimed deliveries from a dead worker", extra={"count": len(rows)})
    return len(rows)


def _record_journaled(session: Session, stale: Any) -> set[int]:
    """Record as sent the ``stale`` deliveries their holders' journals say the relay took
    (no commit); the editions they belong to."""
    now = utcnow()
    editions: set[int] = set()
    holders = session.scalars(select(Delivery.holder).distinct()
                              .where(stale, Delivery.holder.is_not(None))).all()
    for holder_id in holders:
        try:
            accepted = claims.read_journal(holder_id)
        except Exception:
            log.warning("could not read a holder's journal", exc_info=True,
                        extra={"holder": holder_id})
            continue
        if accepted:
            editions.update(session.execute(
                update(Delivery)
                .where(stale, Delivery.holder == holder_id, Delivery.id.in_(accepted))
                .values(status=DeliveryStatus.SENT, last_error=None, sent_at=now, holder=None)
                .returning(Delivery.edition_id)).scalars())
    return editions


def reclaim_orphaned(session: Session) -> int:
    """Take back the deliveries of holders whose heartbeat stopped (claims.dead).

    What the holder's journal says the relay accepted is recorded as sent; the rest go
    back to the queue as the lease would put them (attempt spent, same Message-ID, one
    more reclaim: the message in flight when the process died may have reached the relay).
    """
    taken = 0
    for holder_id in claims.dead(session):
        try:
            taken += _take_back(session, holder_id)
        except Exception:
            # Its journal unread, its accepted messages would go out twice: next pass.
            session.rollback()
            log.warning("could not take back a dead holder's deliveries", exc_info=True,
                        extra={"holder": holder_id})
    return taken


def _take_back(session: Session, holder_id: str) -> int:
    # The holder's row goes first, and only if it is still silent: a holder that came
    # back (a new batch registering) keeps it, and its claims wait on this transaction.
    if not claims.forget(session, holder_id):
        session.rollback()
        return 0
    accepted = claims.read_journal(holder_id)
    now = utcnow()
    held = and_(Delivery.status == DeliveryStatus.SENDING, Delivery.holder == holder_id)
    sent = session.execute(
        update(Delivery).where(held, Delivery.id.in_(accepted) if accepted else false())
        .values(status=DeliveryStatus.SENT, last_error=None, sent_at=now, holder=None)
        .returning(Delivery.edition_id)
    ).scalars().all()
    rows = session.execute(
        update(Delivery).where(held)
        .values(status=DeliveryStatus.QUEUED, claimed_at=None, holder=None, queued_at=now,
                reclaims=Delivery.reclaims + 1)
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    touched = set(sent) | {r[1] for r in rows}
    sendable = set(session.scalars(select(Edition.id).where(
        Edition.id.in_(touched), Edition.status.in_(SENDABLE)))) if touched else set()
    # A paused edition's rows wait there for resume, which re-enqueues them.
    deliveries.enqueue(session, [r for r in rows if r[1] in sendable])
    session.commit()
    claims.drop_journal(holder_id)
    for edition_id in touched:
        deliveries.finish_if_complete(session, edition_id)
    if touched:
        log.warning("took back the deliveries of a dead worker",
                    extra={"holder": holder_id, "sent": len(sent), "requeued": len(rows)})
    return len(sent) + len(rows)


def requeue_after_broker_loss(session: Session) -> int:
    """Re-enqueue every queued delivery of a sending edition if the broker lost its queue.

    Told by the broker's epoch mark (claims.broker_marked): a key that an empty restart
    loses with the queue. A healthy broker, however long its backlog, keeps the mark and
    gets no duplicate; after a loss each queued delivery gets one task more than it may
    need, which its claim makes harmless. The first pass ever also finds no mark.
    """
    try:
        if claims.broker_marked():
            return 0
    except Exception:
        log.warning("could not read the broker's epoch mark", exc_info=True)
        return 0
    rows = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.QUEUED, not_(waves.HELD),
               Delivery.edition_id.in_(select(Edition.id).where(Edition.status.in_(SENDABLE))))
        .values(queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    deliveries.enqueue(session, rows)
    session.commit()
    # Marked only now: a pass that failed before the commit leaves the mark missing.
    try:
        claims.mark_broker()
    except Exception:
        log.warning("could not mark the broker; the next pass enqueues again", exc_info=True)
    if rows:
        log.warning("the broker lost its queue: queued deliveries enqueued again",
                    extra={"count": len(rows)})
    return len(rows)


def requeue_lost(session: Session, lease: timedelta) -> int:
    """Re-enqueue queued deliveries of sending editions untouched for ``lease``.

    Not those held for their wave: they were never in the queue, and not yet due is not
    lost (waves.release_due hands them over when due).
    """
    now = utcnow()
    since = now - lease
    rows = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.QUEUED, not_(waves.HELD),
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
    if edition.status != EditionStatus.PAUSED:
        raise NotPaused(f"edition {edition_id} is {edition.status}, not paused")
    edition.status, edition.error = EditionStatus.SENDING, None
    now = utcnow()
    rows = session.execute(
        update(Delivery)
        # Held deliveries whose wave is still to come keep waiting for it.
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(UNSENT),
               not_(and_(waves.HELD, Delivery.not_before > now)))
        .values(status=DeliveryStatus.QUEUED, queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    deliveries.enqueue(session, rows)
    session.commit()
    deliveries.finish_if_complete(session, edition_id)
    log.info("edition resumed", extra={"edition_id": edition_id, "queued": len(rows)})
    return {"id": edition_id, "status": EditionStatus.SENDING, "queued": len(rows)}


def requeue_dead(session: Session, edition_id: int) -> dict[str, Any]:
    """Send the edition's dead letter (gave up after temporary failures) again."""
    # Locked: a prune (retention.py) takes the same row lock for each batch it drops.
    edition = session.get(Edition, edition_id, with_for_update=True)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    if edition.pruned_figures is not None:
        session.rollback()
        raise Conflict(f"edition {edition_id} is pruned (or being pruned): its deliveries "
                       "are history, there is nothing to send again")
    rows = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.FAILED,
               Delivery.failure == "temporary")
        .values(status=DeliveryStatus.QUEUED, failure=None, attempts=0, queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    if rows and edition.status == EditionStatus.DONE:
        edition.status, edition.finished_at = EditionStatus.SENDING, None
    if edition.status != EditionStatus.PAUSED:
        deliveries.enqueue(session, rows)
    session.commit()
    log.info("dead letter requeued", extra={"edition_id": edition_id, "queued": len(rows)})
    return {"id": edition_id, "status": edition.status, "requeued": len(rows)}
