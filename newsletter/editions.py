"""Editions: ask for one (editor, API or schedule), and see what it did."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.articles import slugify
from newsletter.models import ConsentEvent, Delivery, Edition, Tag, utcnow

DIGEST_FREQUENCIES = ("daily", "weekly")
LOOKBACK = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
STATUSES = ("planning", "sending", "done", "paused", "failed")


class EditionError(ValueError):
    """An edition cannot be requested as asked; the message says why."""


class EditionNotFound(LookupError):
    pass


def period_key(frequency: str, at: datetime) -> str:
    """The schedule period an instant falls in: '2026-11-28' (daily) or '2026-W48' (weekly)."""
    if frequency == "daily":
        return at.date().isoformat()
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def request(
    session: Session,
    frequency: str,
    *,
    tags: Iterable[str] | None = None,
    dry_run: bool = False,
    source: str = "api",
    period: str | None = None,
) -> Edition:
    """Ask for a digest edition; planning and sending happen in the workers.

    With ``period`` set (scheduled sends) the request is idempotent: asking twice for the
    same frequency and period returns the first edition.
    """
    if frequency not in DIGEST_FREQUENCIES:
        raise EditionError("frequency must be 'daily' or 'weekly'")
    if dry_run:
        raise EditionError("dry_run is not supported yet: see the editor workflows issue")
    slugs = sorted({slugify(t) for t in tags or [] if t and t.strip()}) or None
    if slugs:
        known = set(session.scalars(select(Tag.slug).where(Tag.slug.in_(slugs))))
        if unknown := sorted(set(slugs) - known):
            raise EditionError(f"unknown tag(s): {', '.join(unknown)}")
    if period is not None:
        existing = session.scalar(
            select(Edition).where(Edition.kind == "digest", Edition.frequency == frequency,
                                  Edition.period_key == period)
        )
        if existing is not None:
            return existing
    edition = Edition(kind="digest", frequency=frequency, tags=slugs, source=source,
                      period_key=period, status="planning", cutoff_at=utcnow())
    try:
        with session.begin_nested():
            session.add(edition)
            session.flush()
    except IntegrityError:
        # Another scheduler won the race for this period: theirs is the edition.
        return session.scalars(
            select(Edition).where(Edition.kind == "digest", Edition.frequency == frequency,
                                  Edition.period_key == period)
        ).one()
    events.record(session, events.EDITION_REQUESTED, edition_id=edition.id)
    return edition


def report(session: Session, edition_id: int) -> dict[str, Any]:
    """What an edition did so far: status and delivery counts."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    by_status = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.edition_id == edition_id)
            .group_by(Delivery.status)
        ).all()
    )
    unsubscribed = session.scalar(
        select(func.count()).select_from(ConsentEvent)
        .where(ConsentEvent.edition_id == edition_id, ConsentEvent.action == "withdrawn")
    )
    return {
        "id": edition.id,
        "frequency": edition.frequency,
        "tags": edition.tags,
        "status": edition.status,
        "requested_at": edition.requested_at.isoformat(),
        "started_at": edition.started_at.isoformat() if edition.started_at else None,
        "finished_at": edition.finished_at.isoformat() if edition.finished_at else None,
        "distinct_digests": edition.distinct_digests,
        "counts": {
            "planned": sum(by_status.values()),
            "sent": by_status.get("sent", 0),
            "failed": by_status.get("failed", 0),
            "skipped": by_status.get("suppressed", 0),
            "unsubscribed": unsubscribed or 0,
            "queued": sum(by_status.get(s, 0) for s in ("queued", "sending", "retry")),
        },
        "error": edition.error,
    }
