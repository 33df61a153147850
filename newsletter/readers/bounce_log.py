"""Bounces and complaints as the console reads them: newest first, by kind, and how many of
each came in lately. Reports name readers by id and hash only (bounces.py redacts them)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import BounceEvent, utcnow

KINDS = ("hard", "soft", "complaint")


def count(session: Session, kind: str = "") -> int:
    stmt = select(func.count(BounceEvent.id))
    if kind in KINDS:
        stmt = stmt.where(BounceEvent.kind == kind)
    return session.scalar(stmt) or 0


def events(session: Session, limit: int, offset: int, kind: str = "") -> list[BounceEvent]:
    stmt = select(BounceEvent).order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
    if kind in KINDS:
        stmt = stmt.where(BounceEvent.kind == kind)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def recent_counts(session: Session, days: int = 30) -> dict[str, int]:
    """Reports about our own messages in the last ``days``, by kind (unmatched ones left out:
    they say nothing about our list)."""
    since = utcnow() - timedelta(days=days)
    found = dict(session.execute(
        select(BounceEvent.kind, func.count()).where(BounceEvent.received_at >= since,
                                                     BounceEvent.unmatched.is_(None))
        .group_by(BounceEvent.kind)).tuples().all())
    return {kind: found.get(kind, 0) for kind in KINDS}
