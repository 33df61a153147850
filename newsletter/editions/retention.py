"""Retention: delivery rows are the ledger while an edition is live, then mostly history.

A prune keeps what "never twice", corrections, reports, consent and audit need, and drops
the rest in batches of a few thousand rows per transaction (no long locks):

- an edition finished before the cutoff keeps its report: the figures its report read from
  its deliveries go on the edition row first (reports.figures_to_keep), then its deliveries
  go, each leaving one narrow received_digests row (reader, edition, content key, when it
  was claimed if sent) that selection.history reads beside the deliveries;
- the outbox's dispatched events older than the cutoff (not one a webhook still waits on),
  and webhook deliveries delivered before it.

Kept whole: editions, edition_digests (the digests' article lists), articles and their
revisions, consent_events, audit_log, story_clicks, bounce_events (their link to a pruned
delivery becomes NULL; the edition's bounce counts are kept on the edition).
An edition open, planning, sending or paused is never touched; once its prune has begun a
requeue is refused (reconcile.requeue_dead), and one that came first leaves it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from newsletter import sql
from newsletter.config import get_settings
from newsletter.editions import reports
from newsletter.models import (
    Delivery,
    Edition,
    OutboxEvent,
    ReceivedDigest,
    WebhookDelivery,
    WebhookPending,
    utcnow,
)
from newsletter.states import EditionStatus

# Finished for good: a requeue takes an edition back to sending (and clears finished_at).
FINISHED = (EditionStatus.DONE, EditionStatus.FAILED)


@dataclass
class Pruned:
    """What a prune dropped (or, for a dry run, would drop)."""

    editions: int = 0
    deliveries: int = 0
    outbox_events: int = 0
    webhook_deliveries: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def prune(session: Session, older_than: timedelta, *, batch: int | None = None,
          dry_run: bool = False, now: datetime | None = None) -> Pruned:
    """Drop what is older than ``older_than`` (see the module's docstring)."""
    cutoff = (now or utcnow()) - older_than
    batch = batch or get_settings().retention_batch
    if dry_run:
        return _would_go(session, cutoff)
    done = Pruned()
    for edition_id in session.scalars(_editions_due(cutoff)).all():
        moved, finished = _prune_edition(session, edition_id, cutoff, batch)
        done.editions += finished
        done.deliveries += moved
    done.outbox_events = _in_batches(session, _outbox_due(cutoff), OutboxEvent, batch)
    done.webhook_deliveries = _in_batches(session, _webhooks_due(cutoff), WebhookDelivery,
                                          batch)
    return done


def prune_by_setting(session: Session) -> Pruned | None:
    """Beat's daily prune at RETENTION_DAYS; None when retention is off (0)."""
    days = get_settings().retention_days
    return prune(session, timedelta(days=days)) if days else None


def _editions_due(cutoff: datetime):
    return (select(Edition.id)
            .where(Edition.status.in_(FINISHED), Edition.finished_at < cutoff,
                   Edition.pruned_at.is_(None), Edition.dry_run.is_(False))
            .order_by(Edition.id))


def _still_due(session: Session, edition_id: int, cutoff: datetime) -> bool:
    """Lock the edition row and check it is still finished before the cutoff: a requeue
    (which writes this row) waits for the batch, or the batch sees it and stops."""
    return session.scalar(
        select(Edition.id).where(Edition.id == edition_id, Edition.status.in_(FINISHED),
                                 Edition.finished_at < cutoff)
        .with_for_update()) is not None


def _prune_edition(session: Session, edition_id: int, cutoff: datetime,
                   batch: int) -> tuple[int, bool]:
    """Move one edition's deliveries into received_digests, batch by batch: how many, and
    whether all (not if it was requeued meanwhile: the rest stay, live again)."""
    if not _still_due(session, edition_id, cutoff):
        session.rollback()
        return 0, False
    edition = session.get(Edition, edition_id)
    if edition.pruned_figures is None:  # a prune interrupted after this keeps the first copy
        edition.pruned_figures = reports.figures_to_keep(session, edition_id)
    session.commit()
    moved = 0
    while True:
        if not _still_due(session, edition_id, cutoff):
            # Requeued before a batch went: its deliveries are whole, so are its live figures.
            session.rollback()
            if not moved:
                session.execute(update(Edition).where(Edition.id == edition_id)
                                .values(pruned_figures=None))
                session.commit()
            return moved, False
        rows = session.execute(
            select(Delivery.id, Delivery.reader_id, Delivery.content_key, Delivery.status,
                   Delivery.claimed_at)
            # No ORDER BY: the edition's index yields a batch at once, with no sort of all
            # its remaining rows per batch (a million for a large edition).
            .where(Delivery.edition_id == edition_id).limit(batch)).all()
        if not rows:
            break
        _keep_history(session, edition_id, rows)
        session.execute(delete(Delivery).where(
            sql.one_of(session, Delivery.id, [r.id for r in rows])))
        session.commit()
        moved += len(rows)
    session.execute(update(Edition).where(Edition.id == edition_id)
                    .values(pruned_at=utcnow()))
    session.commit()
    return moved, True


def _keep_history(session: Session, edition_id: int, rows) -> None:
    """A delivery's part in "never twice": what selection.history reads from it. An erased
    reader's delivery (reader NULL) has no history to keep."""
    history = [{"reader_id": r.reader_id, "edition_id": edition_id,
                "content_key": r.content_key,
                "received_at": r.claimed_at if r.status == "sent" else None}
               for r in rows if r.reader_id is not None]
    if history:
        session.execute(sql.insert_ignoring_duplicates(session, ReceivedDigest.__table__),
                        history)


def _outbox_due(cutoff: datetime):
    # An event a webhook endpoint still waits on stays (its pending row cascades from it).
    return (select(OutboxEvent.id)
            .where(OutboxEvent.dispatched_at < cutoff,
                   ~select(WebhookPending.event_id)
                   .where(WebhookPending.event_id == OutboxEvent.id).exists()))


def _webhooks_due(cutoff: datetime):
    return select(WebhookDelivery.id).where(WebhookDelivery.status == "delivered",
                                            WebhookDelivery.delivered_at < cutoff)


def _in_batches(session: Session, due, model, batch: int) -> int:
    gone = 0
    while ids := session.scalars(due.order_by(model.id).limit(batch)).all():
        session.execute(delete(model).where(sql.one_of(session, model.id, ids)))
        session.commit()
        gone += len(ids)
    return gone


def _would_go(session: Session, cutoff: datetime) -> Pruned:
    editions = session.scalars(_editions_due(cutoff)).all()
    deliveries = session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.edition_id.in_(editions))) if editions else 0
    outbox = session.scalar(select(func.count()).select_from(_outbox_due(cutoff).subquery()))
    hooks = session.scalar(select(func.count()).select_from(_webhooks_due(cutoff).subquery()))
    session.rollback()
    return Pruned(len(editions), deliveries or 0, outbox or 0, hooks or 0)
