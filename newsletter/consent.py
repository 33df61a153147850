"""The consent ledger: append-only proof of every opt-in, change and opt-out."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from newsletter.config import CONSENT_TEXT_VERSION, get_settings
from newsletter.models import ConsentEvent, utcnow

ACTIONS = ("requested", "confirmed", "changed", "withdrawn")


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def record(
    session: Session,
    reader_id: int,
    email: str,
    action: str,
    *,
    source: str,
    method: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    edition_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one ledger entry for the reader with the consent text in force."""
    if action not in ACTIONS:
        raise ValueError(f"unknown consent action {action!r}")
    # A Core insert: an entry is never read back or changed in the transaction that
    # writes it, so the unit of work would only add its cost (see subscriptions.subscribe).
    session.execute(_INSERT, dict(
        reader_id=reader_id,
        email_hash=email_hash(email),
        action=action,
        source=source,
        method=method,
        consent_text_version=CONSENT_TEXT_VERSION,
        consent_text_hash=get_settings().consent_text_hash,
        ip=ip,
        user_agent=(user_agent or "")[:512] or None,
        edition_id=edition_id,
        details=details or {},
        created_at=utcnow(),
    ))


_INSERT = insert(ConsentEvent.__table__)  # built once, run with parameters


def suppress(session: Session, email: str, reason: str) -> None:
    """Never mail ``email`` again without a fresh opt-in; kept only as its hash."""
    from sqlalchemy import select

    from newsletter.models import Suppression

    digest = email_hash(email)
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is None:
        session.add(Suppression(email_hash=digest, reason=reason))
        session.flush()


def is_suppressed(session: Session, email: str) -> bool:
    from sqlalchemy import select

    from newsletter.models import Suppression

    return session.scalar(
        select(Suppression.id).where(Suppression.email_hash == email_hash(email))
    ) is not None


def unsuppress(session: Session, email: str, reasons: tuple[str, ...]) -> None:
    """Lift a suppression of one of ``reasons`` (a fresh double opt-in renews consent)."""
    from sqlalchemy import delete

    from newsletter.models import Suppression

    session.execute(delete(Suppression).where(Suppression.email_hash == email_hash(email),
                                              Suppression.reason.in_(reasons)))
