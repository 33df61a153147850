"""What an edition did: its status, delivery counts, timings, planning figures and the
reasons its deliveries failed."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from newsletter.errors import EditionNotFound
from newsletter.models import ConsentEvent, Delivery, Edition
from newsletter.states import OPEN, DeliveryStatus


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


def last_sent(session: Session) -> dict[str, Any] | None:
    """The report of the latest edition that made deliveries (dry runs make none)."""
    latest = session.scalar(select(Edition).where(
        Edition.dry_run.is_(False),
        select(Delivery.id).where(Delivery.edition_id == Edition.id).exists())
        .order_by(Edition.id.desc()).limit(1))
    return _reports(session, [latest])[0] if latest else None


def _reports(session: Session, chosen: Sequence[Edition]) -> list[dict[str, Any]]:
    ids = [e.id for e in chosen]
    tally: dict[int, dict[tuple[str, str | None], int]] = defaultdict(dict)
    reclaims: dict[int, int] = defaultdict(int)
    reasons: dict[int, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    # One pass over the editions' deliveries for counts, reclaims and failure reasons: at
    # 100,000 deliveries each pass is a scan of ~40 ms on PostgreSQL, and the console's
    # deliverability page shows this report (bench/console_pages.py).
    error = case((Delivery.status == "failed", Delivery.last_error), else_=None)
    for edition_id, status, failure, reason, n, reclaimed in session.execute(
        select(Delivery.edition_id, Delivery.status, Delivery.failure, error, func.count(),
               func.sum(Delivery.reclaims))
        .where(Delivery.edition_id.in_(ids))
        .group_by(Delivery.edition_id, Delivery.status, Delivery.failure, error)
    ):
        key = (status, failure)
        tally[edition_id][key] = tally[edition_id].get(key, 0) + n
        reclaims[edition_id] += int(reclaimed or 0)
        if status == "failed":
            reasons[edition_id][reason] += n
    withdrawn = dict(session.execute(
        select(ConsentEvent.edition_id, func.count())
        .where(ConsentEvent.edition_id.in_(ids), ConsentEvent.action == "withdrawn",
               # A bounce or complaint is not a reader choosing to leave this edition.
               ConsentEvent.method.not_in(("bounce", "complaint")))
        .group_by(ConsentEvent.edition_id)
    ).all())
    failures = {edition_id: [{"reason": _redacted(reason), "count": n} for reason, n in sorted(
        found.items(), key=lambda item: -item[1])[:FAILURE_REASONS]]
        for edition_id, found in reasons.items()}
    return [_report(e, tally[e.id], withdrawn.get(e.id, 0), reclaims.get(e.id, 0),
                    failures.get(e.id, [])) for e in chosen]


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
    failed_temporary = by.get((DeliveryStatus.FAILED, "temporary"), 0)
    suppressed = n(DeliveryStatus.SUPPRESSED)
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
            "sent": n(DeliveryStatus.SENT),
            "failed": n(DeliveryStatus.FAILED),
            "failed_temporary": failed_temporary,
            "failed_permanent": n(DeliveryStatus.FAILED) - failed_temporary,
            "skipped": empty + suppressed,
            "skipped_empty": empty,
            "skipped_suppressed": suppressed,
            "unsubscribed": unsubscribed,
            "queued": n(*OPEN),
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
