"""What an edition did: its status, delivery counts, timings, planning figures and the
reasons its deliveries failed."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from newsletter.errors import EditionNotFound
from newsletter.mail.lru import LRU
from newsletter.models import (
    Article,
    BounceEvent,
    ConsentEvent,
    Delivery,
    Edition,
    EditionDigest,
    Topic,
)
from newsletter.states import OPEN, DeliveryStatus, EditionStatus


def report(session: Session, edition_id: int) -> dict[str, Any]:
    """What an edition did so far: status, delivery counts, timings, planning figures."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    return _reports(session, [edition])[0]


def recent(session: Session, limit: int = 20, offset: int = 0,
           status: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Reports of the latest ``limit`` editions (after ``offset``), newest first; only
    those in one of ``status`` when given."""
    query = select(Edition).order_by(Edition.id.desc())
    if status:
        query = query.where(Edition.status.in_(status))
    return _reports(session, session.scalars(query.limit(limit).offset(offset)).all())


def count(session: Session) -> int:
    """How many editions there are (dry runs and alerts included)."""
    return session.scalar(select(func.count()).select_from(Edition)) or 0


def last_sent(session: Session) -> dict[str, Any] | None:
    """The report of the latest edition that made deliveries (dry runs make none)."""
    latest = session.scalar(select(Edition).where(
        Edition.dry_run.is_(False),
        or_(Edition.pruned_at.is_not(None),  # had deliveries: their figures are kept
            select(Delivery.id).where(Delivery.edition_id == Edition.id).exists()))
        .order_by(Edition.id.desc()).limit(1))
    return _reports(session, [latest])[0] if latest else None


def _reports(session: Session, chosen: Sequence[Edition]) -> list[dict[str, Any]]:
    ids = [e.id for e in chosen]
    withdrawn = dict(session.execute(
        select(ConsentEvent.edition_id, func.count())
        .where(ConsentEvent.edition_id.in_(ids), ConsentEvent.action == "withdrawn",
               # A bounce or complaint is not a reader choosing to leave this edition.
               ConsentEvent.method.not_in(("bounce", "complaint")))
        .group_by(ConsentEvent.edition_id)
    ).all())
    deliveries = {e.id: _kept_figures(e) or _SETTLED.get(_settled_key(e)) for e in chosen}
    if missing := [i for i, known in deliveries.items() if known is None]:
        deliveries.update(_delivery_figures(session, missing))
        for e in chosen:
            if (key := _settled_key(e)) is not None:
                _SETTLED.put(key, deliveries[e.id])
    return [_report(e, *deliveries[e.id][:1], withdrawn.get(e.id, 0), *deliveries[e.id][1:])
            for e in chosen]


# Delivery figures of finished editions, per process: an edition of 100,000 deliveries takes
# ~100 ms to count, and once done its deliveries no longer change until a requeue, which
# clears finished_at (part of the key). Unsubscribes keep arriving: they are always counted.
SETTLED_EDITIONS = 256
_SETTLED = LRU(SETTLED_EDITIONS)


def figures_to_keep(session: Session, edition_id: int) -> dict[str, Any]:
    """What the edition's report, bounces and sample read from its deliveries, as plain data
    for the edition row: retention stores it before it drops them (see _kept_figures)."""
    by, reclaimed, failures = _delivery_figures(session, [edition_id])[edition_id]
    return {"by": [[status, failure, n] for (status, failure), n in sorted(
                by.items(), key=lambda item: (item[0][0], item[0][1] or ""))],
            "reclaimed": reclaimed, "failures": failures,
            "bounces": bounces(session, [edition_id]).get(edition_id, {}),
            "sample": _sample_keys(session, edition_id, SAMPLE_DIGESTS)}


def sent_count(session: Session, edition_id: int) -> int:
    """How many of the edition's emails went out (kept on the edition once pruned)."""
    edition = session.get(Edition, edition_id)
    if edition is not None and (kept := _kept_figures(edition)) is not None:
        return sum(n for (status, _), n in kept[0].items() if status == DeliveryStatus.SENT)
    return session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.SENT)) or 0


def _kept_figures(edition: Edition) -> tuple[Any, ...] | None:
    """A pruned edition's delivery figures, as _delivery_figures gave them before."""
    kept = edition.pruned_figures if edition.pruned_at is not None else None
    if kept is None:
        return None
    return ({(s, f): n for s, f, n in kept["by"]}, kept["reclaimed"],
            [dict(f) for f in kept["failures"]])


def _settled_key(edition: Edition) -> tuple[Any, ...] | None:
    if edition.status not in (EditionStatus.DONE, EditionStatus.FAILED) \
            or edition.finished_at is None:
        return None
    # The cutoff tells a reused id (SQLite reuses rowids after deletes) from the first.
    return (edition.id, edition.finished_at.isoformat(), edition.cutoff_at.isoformat())


def _delivery_figures(session: Session, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """Per edition: deliveries by (status, failure), reclaims, the commonest failures."""
    tally: dict[int, dict[tuple[str, str | None], int]] = defaultdict(dict)
    reclaims: dict[int, int] = defaultdict(int)
    reasons: dict[int, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    # One pass over the editions' deliveries for counts, reclaims and failure reasons: at
    # 100,000 deliveries each pass is a scan of ~40 ms on PostgreSQL.
    error = case((Delivery.status == DeliveryStatus.FAILED, Delivery.last_error), else_=None)
    for edition_id, status, failure, reason, n, reclaimed in session.execute(
        select(Delivery.edition_id, Delivery.status, Delivery.failure, error, func.count(),
               func.sum(Delivery.reclaims))
        .where(Delivery.edition_id.in_(ids))
        .group_by(Delivery.edition_id, Delivery.status, Delivery.failure, error)
    ):
        key = (status, failure)
        tally[edition_id][key] = tally[edition_id].get(key, 0) + n
        reclaims[edition_id] += int(reclaimed or 0)
        if status == DeliveryStatus.FAILED:
            reasons[edition_id][reason] += n
    failures = {edition_id: [{"reason": _redacted(reason), "count": n} for reason, n in sorted(
        found.items(), key=lambda item: -item[1])[:FAILURE_REASONS]]
        for edition_id, found in reasons.items()}
    return {i: (tally[i], reclaims[i], failures.get(i, [])) for i in ids}


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
        "failures": [dict(f) for f in failures or ()],
        "error": edition.error,
        "note": edition.note,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def bounces(session: Session, edition_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Bounces and complaints about each edition's messages: {edition id: {kind: n}}
    (hard, soft, complaint), matched to the delivery they name."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for edition_id, kept in session.execute(
        select(Edition.id, Edition.pruned_figures)
        .where(Edition.id.in_(edition_ids), Edition.pruned_at.is_not(None))
    ):
        out[edition_id] = dict((kept or {}).get("bounces", {}))
    for edition_id, kind, n in session.execute(
        select(Delivery.edition_id, BounceEvent.kind, func.count())
        .join(Delivery, Delivery.id == BounceEvent.delivery_id)
        .where(Delivery.edition_id.in_(edition_ids))
        .group_by(Delivery.edition_id, BounceEvent.kind)
    ):
        out[edition_id][kind] = n
    return dict(out)


def topics(session: Session, edition_id: int) -> list[dict[str, Any]] | None:
    """Per topic of an edition, as planning counted them: the articles it carried under the
    topic, and the readers whose digest had the topic (for a dry run, would have); most
    readers first. None for an edition not planned yet (or planned before these figures)."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionNotFound(f"no edition {edition_id}")
    counted = (edition.plan_report or {}).get("topics")
    if counted is None:
        return None
    names = dict(session.execute(select(Topic.id, Topic.name).where(
        Topic.id.in_([t["topic_id"] for t in counted]))).all()) if counted else {}
    rows = [{"topic": names.get(t["topic_id"], f"topic {t['topic_id']} (deleted)"),
             "articles": t["articles"], "readers": t["readers"]} for t in counted]
    return sorted(rows, key=lambda r: (-r["readers"], r["topic"]))


# Digests a report shows as a sample of what the edition sent.
SAMPLE_DIGESTS = 3


def sample(session: Session, edition_id: int,
           limit: int = SAMPLE_DIGESTS) -> list[dict[str, Any]]:
    """A few digests the edition sent, as headlines under their topics (the first the
    edition's index finds: no sort over its deliveries), never a reader's address."""
    edition = session.get(Edition, edition_id)
    if edition is not None and edition.pruned_at is not None:
        keys = list((edition.pruned_figures or {}).get("sample", []))[:limit]
    else:
        keys = _sample_keys(session, edition_id, limit)
    if not keys:
        return []
    stored = dict(session.execute(
        select(EditionDigest.content_key, EditionDigest.items)
        .where(EditionDigest.edition_id == edition_id,
               EditionDigest.content_key.in_(keys))).all())
    wanted = {item[1] for items in stored.values() for item in items}
    titles = dict(session.execute(
        select(Article.id, Article.title).where(Article.id.in_(wanted))).all()) if wanted else {}
    names = dict(session.execute(select(Topic.id, Topic.name)).all())
    out = []
    for key in keys:
        sections: dict[str, list[str]] = {}
        for kind, article_id, topic_id, _revision in stored.get(key, []):
            title = titles.get(article_id, "(withdrawn since)")
            sections.setdefault(names.get(topic_id, f"topic {topic_id}"), []).append(
                title if kind == "new" else f"{title} (updated)")
        out.append({"content_key": key, "sections": sections})
    return out


def _sample_keys(session: Session, edition_id: int, limit: int) -> list[str]:
    return list(dict.fromkeys(session.scalars(
        select(Delivery.content_key)
        .where(Delivery.edition_id == edition_id, Delivery.status == "sent")
        .limit(limit * 20))))[:limit]
