"""The suppression list as an admin reads and corrects it: newest first, found by the
address typed (hashed as the list keeps it, see ``consent.email_hash``), lifted one entry
at a time. The list holds no address, so it shows none: only the reason and the date."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.errors import SuppressionNotFound
from newsletter.models import Suppression
from newsletter.readers import consent

REASONS = ("erased", "bounce", "complaint", "admin")


def count(session: Session, reason: str = "") -> int:
    stmt = select(func.count(Suppression.id))
    if reason:
        stmt = stmt.where(Suppression.reason == reason)
    return session.scalar(stmt) or 0


def entries(session: Session, limit: int, offset: int, reason: str = "") -> list[Suppression]:
    stmt = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if reason:
        stmt = stmt.where(Suppression.reason == reason)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def find(session: Session, email: str) -> Suppression | None:
    """The entry suppressing this address, if any (a legacy bare hash is rewritten keyed)."""
    if not consent.is_suppressed(session, email):
        return None
    return session.scalar(select(Suppression)
                          .where(Suppression.email_hash == consent.email_hash(email)))


def get(session: Session, suppression_id: int) -> Suppression:
    entry = session.get(Suppression, suppression_id)
    if entry is None:
        raise SuppressionNotFound(f"no suppression {suppression_id} (lifted already?)")
    return entry


def lift(session: Session, suppression_id: int) -> Suppression:
    """Take one entry off the list: the address may sign up (or be imported) again. It
    resubscribes nobody; whoever lifts it records why (the audit log)."""
    entry = get(session, suppression_id)
    session.delete(entry)
    session.flush()
    return entry
