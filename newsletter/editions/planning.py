"""Planning: an edition into delivery rows, page by page, each page queued as it commits.

Planning streams readers by id cursor and commits page by page, so sending
(newsletter.sending) starts while planning goes on and a crash resumes where it stopped
(readers who already have a delivery are skipped).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter import events, sql
from newsletter.config import get_settings
from newsletter.editions import selection as digests
from newsletter.editions import waves
from newsletter.editions.deliveries import finish_if_complete
from newsletter.mail import mailer
from newsletter.models import (
    Delivery,
    Edition,
    EditionDigest,
    Reader,
    utcnow,
)
from newsletter.states import EditionStatus

log = logging.getLogger(__name__)



def plan(session: Session, edition_id: int) -> int:
    """Create the edition's deliveries page by page; returns how many this call made."""
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status != EditionStatus.PLANNING:
        return 0
    # One planner at a time per frequency (readers have one): a reader's history is read
    # before their page is written, so two editions planned side by side (alerts seconds
    # apart, a topic-filtered digest beside the weekly one) could both give them an article.
    with sql.exclusive(session, f"plan-{edition.frequency}"):
        session.expire_all()
        return _plan(session, edition_id)


def _plan(session: Session, edition_id: int) -> int:
    settings = get_settings()
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status != EditionStatus.PLANNING:
        return 0
    if edition.started_at is None:
        edition.started_at = utcnow()
        session.commit()
    candidates = digests.candidate_articles(session, edition)
    # An alert reaches the few immediate readers who follow its stories' topics; a digest
    # reaches most of its readers, where the filter would cost more than it saves.
    follows_any = list(candidates.by_topic) if edition.kind == "alert" else None
    # A scheduled edition's deliveries wait for the send hour in their readers' zones.
    times = waves.release_times(edition, settings)
    # ...and read one of their languages.
    reads_any = sorted(set(candidates.lang.values())) if edition.kind == "alert" else None
    made, after, readers = 0, 0, 0
    analyzed_at = _FIRST_ANALYZE
    would = _DryRun()
    while candidates:
        page = digests.readers_page(session, edition, after, settings.batch_size,
                                    follows_any=follows_any, reads_any=reads_any)
        if not page:
            break
        after = page[-1].id
        readers += len(page)
        if edition.dry_run:
            would.add(digests.decide_page(session, candidates, page))
            continue
        try:
            chosen = _plan_page(session, edition, candidates, page, settings.mail_domain, times)
            session.commit()
        except IntegrityError:
            # A concurrent planner took some of these readers or articles first; deciding
            # the page again sees what it committed.
            session.rollback()
            chosen = _plan_page(session, edition, candidates, page, settings.mail_domain, times)
            session.commit()
        made += len(chosen)
        would.add(chosen)  # its per-topic figures, tallied as a dry run's
        if made >= analyzed_at:
            _analyze(session)
            analyzed_at *= 2
    if edition.dry_run:
        edition.plan_report = would.report(readers)
        edition.distinct_digests = edition.plan_report["distinct_digests"]
        edition.status, edition.finished_at = EditionStatus.DONE, utcnow()
        session.commit()
        return 0
    if made:
        _analyze(session)
    edition.distinct_digests = session.scalar(
        select(func.count(func.distinct(Delivery.content_key))).where(
            Delivery.edition_id == edition.id)
    ) or 0
    edition.plan_report = {**_plan_report(session, edition, readers),
                           "topics": would.report(readers)["topics"]}
    if made < edition.plan_report["emails"]:
        # A resumed plan: the pages planned before the restart are not in the tally.
        edition.plan_report["topics_partial"] = True
    # Not if a batch paused it meanwhile: only resume may take it out of 'paused'.
    session.execute(update(Edition).where(Edition.id == edition.id,
                                          Edition.status == EditionStatus.PLANNING)
                    .values(status=EditionStatus.SENDING))
    session.commit()
    finish_if_complete(session, edition.id)
    return made


# Statistics are refreshed when this many deliveries are made, then at each doubling, and at
# the end: a few ANALYZEs (~0.1 s each) per edition, against plans gone wrong by 100x.
_FIRST_ANALYZE = 1000


def _analyze(session: Session) -> None:
    sql.refresh_statistics(session, Delivery.__table__, EditionDigest.__table__)
    session.commit()


def _plan_page(session: Session, edition: Edition, candidates: digests.Candidates,
               page: list[digests.ReaderRow], domain: str,
               times: waves.ReleaseTimes | None = None) -> list[digests.Digest]:
    """The page's deliveries, inserted (not committed); the digests chosen for them."""
    ids = [r.id for r in page]
    planned = set(session.scalars(
        select(Delivery.reader_id).where(Delivery.edition_id == edition.id,
                                         sql.one_of(session, Delivery.reader_id, ids))))
    todo = [r for r in page if r.id not in planned]
    chosen = digests.decide_page(session, candidates, todo)
    if not chosen:
        return []
    not_before = _release_times(page, chosen, times)
    rows = _insert_deliveries(session, edition.id, chosen, domain, not_before,
                              edition.cutoff_at)
    _store_contents(session, edition.id, chosen)
    # A topic-filtered digest covered only its topics: the reader's next full digest must still
    # carry the rest of what came before this cutoff (already_sent keeps out what this sent).
    if not (edition.kind == "digest" and edition.tags):
        session.execute(
            update(Reader).where(sql.one_of(session, Reader.id, [d.reader_id for d in chosen]))
            .values(last_digest_at=edition.cutoff_at)
        )
    # Those due by the cutoff (every one, without waves) go to the queue now; the others
    # are held until the reconciler's pass releases their wave (waves.release_due).
    due = [r[0] for r, at in zip(rows, not_before, strict=True)
           if at is None or at <= edition.cutoff_at]
    if due:
        events.record(session, events.DELIVERIES_QUEUED, edition_id=edition.id,
                      delivery_ids=due)
    return chosen


def _release_times(page: list[digests.ReaderRow], chosen: list[digests.Digest],
                   times: waves.ReleaseTimes | None) -> list[Any]:
    """Each chosen delivery's not_before (None: at once), in the order of ``chosen``."""
    if times is None:
        return [None] * len(chosen)
    zone_of = {r.id: r.timezone for r in page}
    return [times(zone_of[d.reader_id]) for d in chosen]


def _insert_deliveries(session: Session, edition_id: int, chosen: list[digests.Digest],
                       domain: str, not_before: list[Any],
                       due_by: datetime) -> list[tuple[int, int]]:
    """Insert a page's deliveries (those of a wave due by ``due_by`` marked as queued now);
    returns their (id, reader id)."""
    return sql.insert_deliveries(session, edition_id, [
        (d.reader_id, d.content_key, mailer.make_message_id(domain), at)
        for d, at in zip(chosen, not_before, strict=True)], utcnow(), due_by)


@dataclass
class _DryRun:
    """What a dry run would send, tallied page by page (nothing is written); a real plan
    tallies its per-topic figures the same way, from the digests it chose."""

    emails: int = 0
    content_keys: set[str] = field(default_factory=set)
    articles: set[int] = field(default_factory=set)
    topic_readers: Counter[int] = field(default_factory=Counter)
    topic_articles: dict[int, set[int]] = field(default_factory=dict)

    def add(self, chosen: list[digests.Digest]) -> None:
        self.emails += len(chosen)
        for d in chosen:
            self.content_keys.add(d.content_key)
            self.articles.update(d.article_ids)
            for section in d.sections:
                self.topic_articles.setdefault(section.topic_id, set()).update(
                    section.article_ids)
            # A reader once per topic, although a bilingual digest has a section on it per
            # language.
            self.topic_readers.update({s.topic_id for s in d.sections})

    def report(self, readers: int) -> dict[str, Any]:
        topics = [{"topic_id": t, "readers": n, "articles": len(self.topic_articles[t])}
                  for t, n in self.topic_readers.items()]
        return {"readers": readers, "emails": self.emails,
                "distinct_digests": len(self.content_keys), "articles": len(self.articles),
                "topics": topics}


def _plan_report(session: Session, edition: Edition, readers: int) -> dict[str, Any]:
    # Counted from the rows, not this call's pages: a resumed plan made some of them earlier.
    emails = session.scalar(select(func.count()).where(Delivery.edition_id == edition.id))
    return {"readers": readers, "emails": emails or 0,
            "distinct_digests": edition.distinct_digests,
            "articles": sql.articles_carried(session, edition.id)}


def _store_contents(session: Session, edition_id: int, chosen: list[digests.Digest]) -> None:
    """Write each content key's items once per edition (readers share them), marking those
    that more than one reader gets so far (EditionDigest.shared)."""
    new = {d.content_key: d for d in chosen}
    if not new:
        return
    readers = Counter(d.content_key for d in chosen)
    # Keys an earlier page (or a concurrent planner) stored already: one query per page beats
    # a conflict per row, and the insert below still ignores a race lost meanwhile.
    stored = dict(session.execute(select(EditionDigest.content_key, EditionDigest.shared).where(
        EditionDigest.edition_id == edition_id,
        sql.one_of(session, EditionDigest.content_key, new))).all())
    # Met again on this page: a second reader. Once per key and edition.
    again = [key for key, shared in stored.items() if not shared]
    if again:
        session.execute(update(EditionDigest).where(
            EditionDigest.edition_id == edition_id,
            sql.one_of(session, EditionDigest.content_key, again))
            .values(shared=True).execution_options(synchronize_session=False))
    todo = [d for key, d in new.items() if key not in stored]
    if not todo:
        return
    sql.insert_digests(session, edition_id, [
        (d.content_key, digests.items_json(d.sections, d.corrections), readers[d.content_key] > 1,
         d.locale) for d in todo])




