"""Editions: ask for one (editor, API or schedule), and see what it did."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import events, sql
from newsletter.editions.frequencies import DIGEST_FREQUENCIES
from newsletter.errors import EditionError, EditionNotFound  # noqa: F401 - re-exported
from newsletter.models import Edition, Topic, utcnow
from newsletter.newsroom.tags import slugify
from newsletter.untrusted import strip_controls

# The editor's note is a short intro above the stories, not an article: a few sentences.
NOTE_MAX = 1000


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
    idempotency_key: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Edition:
    """Ask for a digest edition; planning and sending happen in the workers.

    With ``period`` set (scheduled sends) or an ``idempotency_key`` (an editor's client) the
    request is idempotent: asking twice returns the first edition. A dry run only counts.
    ``note`` is the editor's note shown at the top of every digest of the edition.
    """
    if frequency not in DIGEST_FREQUENCIES:
        raise EditionError("frequency must be 'daily' or 'weekly'")
    if idempotency_key is not None:
        if period is not None:
            raise EditionError("give a period or an idempotency key, not both")
        period = idempotent_period(idempotency_key)
    if dry_run and period is not None and idempotency_key is None:
        raise EditionError("a scheduled edition cannot be a dry run")
    note = editors_note(note)
    slugs = sorted({slugify(t) for t in tags or [] if t and t.strip()}) or None
    if slugs:
        # "tags" name topics, by slug (the field kept its name from before topics).
        known = set(session.scalars(select(Topic.slug).where(Topic.slug.in_(slugs),
                                                             Topic.retired_at.is_(None))))
        if unknown := sorted(set(slugs) - known):
            raise EditionError(f"unknown tag(s): {', '.join(unknown)} (name live topics "
                               "by their slug)")
    if period is not None:
        existing = session.scalar(
            select(Edition).where(Edition.kind == "digest", Edition.frequency == frequency,
                                  Edition.period_key == period)
        )
        if existing is not None:
            return existing
    at = now or utcnow()
    values = {"kind": "digest", "frequency": frequency, "tags": slugs, "source": source,
              "period_key": period, "status": "planning", "dry_run": dry_run,
              "cutoff_at": at, "requested_at": at, "note": note}
    if period is None:
        edition = Edition(**values)
        session.add(edition)
        session.flush()
    else:
        edition_id = _insert_once(session, values)
        if edition_id is None:
            # Another scheduler (or click) won the race for this period: theirs is the edition.
            return session.scalars(
                select(Edition).where(Edition.kind == "digest", Edition.frequency == frequency,
                                      Edition.period_key == period)
            ).one()
        edition = session.get(Edition, edition_id)
    events.record(session, events.EDITION_REQUESTED, edition_id=edition.id)
    return edition


def idempotent_period(idempotency_key: str) -> str:
    """The period an idempotency key is kept as: the same unique constraint that makes a
    scheduled period one edition settles a double click."""
    key = idempotency_key.strip()
    if not key or len(key) > 200:
        raise EditionError("an idempotency key is 1 to 200 characters")
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]


def find(session: Session, frequency: str, idempotency_key: str) -> Edition | None:
    """The digest edition already requested with this idempotency key, if any."""
    return session.scalar(select(Edition).where(
        Edition.kind == "digest", Edition.frequency == frequency,
        Edition.period_key == idempotent_period(idempotency_key)))


def editors_note(note: str | None) -> str | None:
    """The note as it is kept: without control characters or surrounding blank space;
    None when there is nothing left. Its text is shown literally, never interpreted."""
    if note is None:
        return None
    kept = strip_controls(note).strip()
    if len(kept) > NOTE_MAX:
        raise EditionError(f"the editor's note is at most {NOTE_MAX:,} characters "
                           f"(this one has {len(kept):,})")
    return kept or None


def _insert_once(session: Session, values: dict[str, Any]) -> int | None:
    """Insert the edition unless its (kind, frequency, period) exists; its id, or None."""
    # Not a savepoint, which would split the edition from its outbox event (see sql.py).
    return sql.insert_unless_present(session, Edition.__table__, values,
                                     ["kind", "frequency", "period_key"], Edition.id)


