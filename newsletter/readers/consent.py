"""The consent ledger: append-only proof of every opt-in, change and opt-out.

Addresses we must remember without keeping them (suppressions, the ledger and bounce
reports after erasure) are kept as a keyed fingerprint: HMAC-SHA256 with HASH_KEY. A bare
SHA-256, as written before migration 0012_keyed_hashes, is reversed by hashing a list of
addresses; such legacy rows still match (see ``matches``) and a suppression found by its
legacy hash is rewritten keyed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from newsletter.config import get_settings
from newsletter.models import ConsentEvent, Suppression, utcnow

ACTIONS = ("requested", "confirmed", "changed", "withdrawn")
KEYED = "hmac-sha256"
LEGACY = "sha256"  # Suppression.hash_scheme of rows written before keyed hashes


def _canonical(email: str) -> bytes:
    return email.strip().lower().encode()


@lru_cache(maxsize=4)
def _key(hash_key: str) -> bytes:
    return hash_key.encode()


def email_hash(email: str) -> str:
    """The keyed fingerprint of an address (HMAC-SHA256 with HASH_KEY)."""
    return hmac.new(_key(get_settings().hash_key), _canonical(email), hashlib.sha256).hexdigest()


def legacy_email_hash(email: str) -> str:
    """The bare SHA-256 the code wrote before keyed hashes; only ever looked up, never written."""
    return hashlib.sha256(_canonical(email)).hexdigest()


def matches(column: Any, email: str) -> ColumnElement[bool]:
    """``column`` holds this address's fingerprint, keyed or legacy (ledger, bounce reports:
    a legacy hash equal to this address's can only be this address's)."""
    return column.in_((email_hash(email), legacy_email_hash(email)))


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
        consent_text_version=get_settings().consent_text_version,
        consent_text_hash=get_settings().consent_text_hash,
        ip=ip,
        user_agent=(user_agent or "")[:512] or None,
        edition_id=edition_id,
        details=details or {},
        created_at=utcnow(),
    ))


_INSERT = insert(ConsentEvent.__table__)  # built once, run with parameters


def _suppression_of(email: str) -> ColumnElement[bool]:
    return or_(Suppression.email_hash == email_hash(email),
               and_(Suppression.email_hash == legacy_email_hash(email),
                    Suppression.hash_scheme == LEGACY))


def _upgrade(session: Session, emails: Iterable[str]) -> None:
    """Rewrite the legacy suppressions of these addresses keyed (we hold the address now)."""
    for email in emails:
        keyed = email_hash(email)
        legacy = and_(Suppression.email_hash == legacy_email_hash(email),
                      Suppression.hash_scheme == LEGACY)
        if session.scalar(select(Suppression.id).where(Suppression.email_hash == keyed)):
            session.execute(delete(Suppression).where(legacy))
        else:
            session.execute(update(Suppression).where(legacy).values(
                email_hash=keyed, hash_scheme=KEYED))


def suppress(session: Session, email: str, reason: str) -> None:
    """Never mail ``email`` again without a fresh opt-in; kept only as its keyed hash."""
    if not is_suppressed(session, email):
        session.add(Suppression(email_hash=email_hash(email), reason=reason, hash_scheme=KEYED))
        session.flush()


def is_suppressed(session: Session, email: str) -> bool:
    """Whether the address is suppressed (a legacy entry found is rewritten keyed)."""
    return bool(suppressed_among(session, [email]))


def suppressed_among(session: Session, emails: Iterable[str]) -> set[str]:
    """Those of ``emails`` that are suppressed (imports check a chunk at once)."""
    by_hash: dict[str, str] = {}
    for email in emails:
        by_hash[email_hash(email)] = email
        by_hash[legacy_email_hash(email)] = email
    if not by_hash:
        return set()
    found = session.execute(select(Suppression.email_hash, Suppression.hash_scheme).where(
        Suppression.email_hash.in_(list(by_hash)))).all()
    hits, legacy = set(), set()
    for digest, scheme in found:
        email = by_hash[digest]
        is_legacy = digest == legacy_email_hash(email)
        if is_legacy == (scheme == LEGACY):  # a keyed row is never matched by a bare hash
            hits.add(email)
            if is_legacy:
                legacy.add(email)
    _upgrade(session, legacy)
    return hits


def unsuppress(session: Session, email: str, reasons: tuple[str, ...]) -> None:
    """Lift a suppression of one of ``reasons`` (a fresh double opt-in renews consent)."""
    session.execute(delete(Suppression).where(_suppression_of(email),
                                              Suppression.reason.in_(reasons)))
