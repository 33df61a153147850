"""Editions: ask for one (editor, API or schedule), and see what it did."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.models import ConsentEvent, Delivery, Edition, Tag, utcnow
from newsletter.newsroom.articles import slugify

DIGEST_FREQUENCIES = ("daily", "weekly")
# "immediate": an alert skips a story first published more than this before its window
# (a feed backfill is not news), however recently it reached us.
LOOKBACK = {"daily": timedelta(days=1), "weekly": timedelta(days=7),
            "immediate": timedelta(hours=1)}
# 'open': an alert window still collecting articles until its cutoff (see alerts.py).
STATUSES = ("open", "planning", "sending", "done", "paused", "failed")
FINISHED = ("done", "paused", "failed")
OPEN_DELIVERY = ("queued", "sending", "retry")


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
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Edition:
    """Ask for a digest edition; planning and sending happen in the workers.

    With ``period`` set (scheduled sends) or an ``idempotency_key`` (an editor's client) the
    request is idempotent: asking twice returns the first edition. A dry run only counts.
    """
    if frequency not in DIGEST_FREQUENCIES:
        raise EditionError("frequency must be 'daily' or 'weekly'")
    if idempotency_key is not None:
        if period is not None:
            raise EditionError("give a period or an idempotency key, not both")
        key = idempotency_key.strip()
        if not key or len(key) > 200:
            raise EditionError("an idempotency key is 1 to 200 characters")
        # Kept in the period column so that the same unique constraint settles the race.
        period = "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]
    if dry_run and period is not None and idempotency_key is None:
        raise EditionError("a scheduled edition cannot be a dry run")
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
    at = now or utcnow()
    values = {"kind": "digest", "frequency": frequency, "tags": slugs, "source": source,
              "period_key": period, "status": "planning", "dry_run": dry_run,
              "cutoff_at": at, "requested_at": at}
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


def _insert_once(session: Session, values: dict[str, Any]) -> int | None:
    """Insert the edition unless its (kind, frequency, period) exists; its id, or None."""
    # ON CONFLICT rather than a savepoint: with pysqlite, releasing the outermost SAVEPOINT
    # commits on its own, which would split the edition from its outbox event. On PostgreSQL
    # a concurrent insert of the same period makes this wait for it, then do nothing.
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[session.get_bind().dialect.name]
    return session.scalar(
        dialect.insert(Edition).values(**values)
        .on_conflict_do_nothing(index_elements=["kind", "frequency", "period_key"])
        .returning(Edition.id)
    )


def report(session: Session, edition_id: int) -> dict[str, Any]:
    """What an edition did so far: status, delivery counts, timings, planning figures."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    return _reports(session, [edition])[0]


def recent(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """Reports of the latest ``limit`` editions, newest first."""
    latest = session.scalars(select(Edition).order_by(Edition.id.desc()).limit(limit)).all()
    return _reports(session, latest)


def _reports(session: Session, chosen: Sequence[Edition]) -> list[dict[str, Any]]:
    ids = [e.id for e in chosen]
    tally: dict[int, dict[tuple[str, str | None], int]] = defaultdict(dict)
    for edition_id, status, failure, n in session.execute(
        select(Delivery.edition_id, Delivery.status, Delivery.failure, func.count())
        .where(Delivery.edition_id.in_(ids))
        .group_by(Delivery.edition_id, Delivery.status, Delivery.failure)
    ):
        tally[edition_id][(status, failure)] = n
    withdrawn = dict(session.execute(
        select(ConsentEvent.edition_id, func.count())
        .where(ConsentEvent.edition_id.in_(ids), ConsentEvent.action == "withdrawn",
               # A bounce or complaint is not a reader choosing to leave this edition.
               ConsentEvent.method.not_in(("bounce", "complaint")))
        .group_by(ConsentEvent.edition_id)
    ).all())
    reclaims = dict(session.execute(
        select(Delivery.edition_id, func.sum(Delivery.reclaims))
        .where(Delivery.edition_id.in_(ids), Delivery.reclaims > 0)
        .group_by(Delivery.edition_id)
    ).all())
    failures: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for edition_id, error, n in session.execute(
        select(Delivery.edition_id, Delivery.last_error, func.count())
        .where(Delivery.edition_id.in_(ids), Delivery.status == "failed")
        .group_by(Delivery.edition_id, Delivery.last_error)
        .order_by(func.count().desc())
    ):
        if len(failures[edition_id]) < FAILURE_REASONS:
            failures[edition_id].append({"reason": _redacted(error), "count": n})
    return [_report(e, tally[e.id], withdrawn.get(e.id, 0), reclaims.get(e.id, 0),
                    failures[e.id]) for e in chosen]


# The commonest reasons an edition's deliveries failed, as its report lists them: enough to
# tell a relay's refusal from a broken article, short enough to read.
FAILURE_REASONS = 5
# An SMTP reply often quotes the address it refused; a report names no reader. A reason is
# cut to 300 characters before it is searched, which bounds the pattern's backtracking.
_ADDRESS = re.compile(r"[^\s<>()\[\]@,;:\"]+@[^\s<>()\[\],;:\"]+")


def _redacted(reason: str | None) -> str:
    return _ADDRESS.sub("<address>", (reason or "")[:300])


def _report(edition: Edition, by: dict[tuple[str, str | None], int],
            unsubscribed: int, reclaimed: int = 0,
            failures: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    def n(*statuses: str) -> int:
        return sum(v for (s, _), v in by.items() if s in statuses)

    planned = sum(by.values())
    failed_temporary = by.get(("failed", "temporary"), 0)
    suppressed = n("suppressed")
    plan = edition.plan_report
    # Readers considered who got nothing: nothing new for them (no empty digests).
    empty = max(plan["readers"] - plan["emails"], 0) if plan and not edition.dry_run else 0
    return {
        "id": edition.id,
        "kind": edition.kind,
        "frequency": edition.frequency,
        "tags": edition.tags,
        "dry_run": edition.dry_run,
        "source": edition.source,
        "period": edition.period_key if edition.source == "schedule" else None,
        "status": edition.status,
        "requested_at": _iso(edition.requested_at),
        "started_at": _iso(edition.started_at),
        "finished_at": _iso(edition.finished_at),
        "distinct_digests": edition.distinct_digests,
        # Planning's figures; for a dry run, what it would have sent.
        "plan": plan,
        "counts": {
            "planned": planned,
            "sent": n("sent"),
            "failed": n("failed"),
            "failed_temporary": failed_temporary,
            "failed_permanent": n("failed") - failed_temporary,
            "skipped": empty + suppressed,
            "skipped_empty": empty,
            "skipped_suppressed": suppressed,
            "unsubscribed": unsubscribed,
            "queued": n(*OPEN_DELIVERY),
            # Failed after every retry: `newsletter requeue EDITION_ID` sends them again.
            "dead_letter": failed_temporary,
            # Taken back from a worker that died mid-send; each may have been a second copy
            # (same Message-ID) if the relay had accepted it before the worker could record.
            "reclaimed": int(reclaimed),
        },
        # Why deliveries failed, commonest first (addresses taken out).
        "failures": failures or [],
        "error": edition.error,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
