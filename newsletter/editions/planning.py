"""Planning: an edition into delivery rows, page by page, each page queued as it commits.

Planning streams readers by id cursor and commits page by page, so sending
(newsletter.sending) starts while planning goes on and a crash resumes where it stopped
(readers who already have a delivery are skipped).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter import db, events
from newsletter.config import get_settings
from newsletter.editions import selection as digests
from newsletter.editions.deliveries import finish_if_complete
from newsletter.mail import mailer
from newsletter.models import (
    Delivery,
    Edition,
    EditionDigest,
    Reader,
    utcnow,
)

log = logging.getLogger(__name__)



def plan(session: Session, edition_id: int) -> int:
    """Create the edition's deliveries page by page; returns how many this call made."""
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status != "planning":
        return 0
    # One planner at a time per frequency (readers have one): a reader's history is read
    # before their page is written, so two editions planned side by side (alerts seconds
    # apart, a tag-filtered digest beside the weekly one) could both give them an article.
    with db.exclusive(session, f"plan-{edition.frequency}"):
        session.expire_all()
        return _plan(session, edition_id)


def _plan(session: Session, edition_id: int) -> int:
    settings = get_settings()
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status != "planning":
        return 0
    if edition.started_at is None:
        edition.started_at = utcnow()
        session.commit()
    candidates = digests.candidate_articles(session, edition)
    # An alert reaches the few immediate readers who follow its stories' topics; a digest
    # reaches most of its readers, where the filter would cost more than it saves.
    follows_any = list(candidates.by_tag) if edition.kind == "alert" else None
    made, after, readers = 0, 0, 0
    analyzed_at = _FIRST_ANALYZE
    would = _DryRun()
    while candidates:
        page = digests.readers_page(session, edition, after, settings.batch_size,
                                    follows_any=follows_any)
        if not page:
            break
        after = page[-1].id
        readers += len(page)
        if edition.dry_run:
            would.add(digests.decide_page(session, candidates, page))
            continue
        try:
            chosen = _plan_page(session, edition, candidates, page, settings.mail_domain)
            session.commit()
        except IntegrityError:
            # A concurrent planner took some of these readers or articles first; deciding
            # the page again sees what it committed.
            session.rollback()
            chosen = _plan_page(session, edition, candidates, page, settings.mail_domain)
            session.commit()
        made += len(chosen)
        would.add(chosen)  # its per-topic figures, tallied as a dry run's
        if made >= analyzed_at:
            _analyze(session)
            analyzed_at *= 2
    if edition.dry_run:
        edition.plan_report = would.report(readers)
        edition.distinct_digests = edition.plan_report["distinct_digests"]
        edition.status, edition.finished_at = "done", utcnow()
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
                                          Edition.status == "planning")
                    .values(status="sending"))
    session.commit()
    finish_if_complete(session, edition.id)
    return made


# Statistics are refreshed when this many deliveries are made, then at each doubling, and at
# the end: a few ANALYZEs (~0.1 s each) per edition, against plans gone wrong by 100x.
_FIRST_ANALYZE = 1000


def _analyze(session: Session) -> None:
    db.refresh_statistics(session, Delivery.__table__, EditionDigest.__table__)
    session.commit()


def _plan_page(session: Session, edition: Edition, candidates: digests.Candidates,
               page: list[digests.ReaderRow], domain: str) -> list[digests.Digest]:
    """The page's deliveries, inserted (not committed); the digests chosen for them."""
    ids = [r.id for r in page]
    planned = set(session.scalars(
        select(Delivery.reader_id).where(Delivery.edition_id == edition.id,
                                         db.one_of(session, Delivery.reader_id, ids))))
    todo = [r for r in page if r.id not in planned]
    chosen = digests.decide_page(session, candidates, todo)
    if not chosen:
        return []
    rows = _insert_deliveries(session, edition.id, chosen, domain)
    _store_contents(session, edition.id, chosen)
    # A tag-filtered digest covered only its tags: the reader's next full digest must still
    # carry the rest of what came before this cutoff (already_sent keeps out what this sent).
    if not (edition.kind == "digest" and edition.tags):
        session.execute(
            update(Reader).where(db.one_of(session, Reader.id, [d.reader_id for d in chosen]))
            .values(last_digest_at=edition.cutoff_at)
        )
    events.record(session, events.DELIVERIES_QUEUED, edition_id=edition.id,
                  delivery_ids=[r[0] for r in rows])
    return chosen


def _insert_deliveries(session: Session, edition_id: int, chosen: list[digests.Digest],
                       domain: str) -> list[tuple[int, int]]:
    """Insert a page's deliveries; returns their (id, reader id)."""
    now = utcnow()
    message_ids = [mailer.make_message_id(domain) for _ in chosen]
    if session.get_bind().dialect.name == "postgresql":
        # Each column as one comma-separated string, not 200 rows of VALUES: psycopg parses a
        # statement's placeholders in Python and caches that only up to 50 of them, so the
        # multi-row INSERT was parsed afresh for every page (15 % of planning, py-spy); and it
        # quotes a list's strings for an array one by one in Python (a quarter of planning).
        # Neither a content key (hex) nor a Message-ID (hex@domain) can hold a comma.
        return [tuple(r) for r in session.execute(_UNNEST_DELIVERIES, {
            "edition_id": edition_id, "created_at": now,
            "readers": ",".join([str(d.reader_id) for d in chosen]),
            "keys": ",".join([d.content_key for d in chosen]),
            "message_ids": ",".join(message_ids)})]
    return [tuple(r) for r in session.execute(
        insert(Delivery).returning(Delivery.id, Delivery.reader_id, sort_by_parameter_order=True),
        [{"edition_id": edition_id, "reader_id": d.reader_id, "status": "queued",
          "content_key": d.content_key, "message_id": message_id, "created_at": now}
         for d, message_id in zip(chosen, message_ids, strict=True)])]


_UNNEST_DELIVERIES = text(
    "INSERT INTO deliveries (edition_id, reader_id, status, content_key, message_id, attempts,"
    " reclaims, created_at)"
    " SELECT :edition_id, r, 'queued', k, m, 0, 0, :created_at"
    " FROM unnest(CAST(string_to_array(:readers, ',') AS INTEGER[]),"
    " string_to_array(:keys, ','), string_to_array(:message_ids, ',')) AS page(r, k, m)"
    " RETURNING id, reader_id"
).bindparams(bindparam("created_at", type_=Delivery.__table__.c.created_at.type))


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
                self.topic_readers[section.tag_id] += 1
                self.topic_articles.setdefault(section.tag_id, set()).update(
                    section.article_ids)

    def report(self, readers: int) -> dict[str, Any]:
        topics = [{"tag_id": t, "readers": n, "articles": len(self.topic_articles[t])}
                  for t, n in self.topic_readers.items()]
        return {"readers": readers, "emails": self.emails,
                "distinct_digests": len(self.content_keys), "articles": len(self.articles),
                "topics": topics}


def _plan_report(session: Session, edition: Edition, readers: int) -> dict[str, Any]:
    # Counted from the rows, not this call's pages: a resumed plan made some of them earlier.
    emails = session.scalar(select(func.count()).where(Delivery.edition_id == edition.id))
    return {"readers": readers, "emails": emails or 0,
            "distinct_digests": edition.distinct_digests,
            "articles": _articles_carried(session, edition.id)}


def _articles_carried(session: Session, edition_id: int) -> int:
    """How many articles the edition's digests carry (corrections aside)."""
    if session.get_bind().dialect.name == "postgresql":
        # Counted where the rows are: decoding ~30,000 digests' items in Python to count a
        # few hundred ids was a tenth of planning 100,000 readers.
        return session.scalar(_COUNT_ARTICLES, {"edition_id": edition_id}) or 0
    # Streamed: at 100,000 readers an edition has ~30,000 digests, and loading their items at
    # once was the planner's memory peak (447 MB against the sender's 154 MB).
    return len({item[1] for items in session.scalars(
        select(EditionDigest.items).where(EditionDigest.edition_id == edition_id)
        .execution_options(yield_per=500))
        for item in items if item[0] == "new"})


_COUNT_ARTICLES = text(
    "SELECT count(DISTINCT item ->> 1) FROM edition_digests,"
    " json_array_elements(items) AS item"
    " WHERE edition_id = :edition_id AND item ->> 0 = 'new'")


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
        db.one_of(session, EditionDigest.content_key, new))).all())
    # Met again on this page: a second reader. Once per key and edition.
    again = [key for key, shared in stored.items() if not shared]
    if again:
        session.execute(update(EditionDigest).where(
            EditionDigest.edition_id == edition_id,
            db.one_of(session, EditionDigest.content_key, again))
            .values(shared=True).execution_options(synchronize_session=False))
    todo = [d for key, d in new.items() if key not in stored]
    if not todo:
        return
    if session.get_bind().dialect.name == "postgresql":
        # The page's digests as one JSON document, [[key, items, shared], …] (see
        # _insert_deliveries).
        session.execute(_NEW_DIGESTS, {"edition_id": edition_id, "digests": "[" + ",".join([
            f'["{d.content_key}",{digests.items_json(d.sections, d.corrections)},'
            f'{"true" if readers[d.content_key] > 1 else "false"}]' for d in todo]) + "]"})
        return
    session.execute(db.insert_ignoring_duplicates(session, EditionDigest.__table__),
                    [{"edition_id": edition_id, "content_key": d.content_key,
                      "items": digests.items(d.sections, d.corrections),
                      "shared": readers[d.content_key] > 1} for d in todo])


_NEW_DIGESTS = text(
    "INSERT INTO edition_digests (edition_id, content_key, items, shared)"
    " SELECT :edition_id, d ->> 0, d -> 1, CAST(d ->> 2 AS BOOLEAN)"
    " FROM json_array_elements(CAST(:digests AS JSON)) AS d ON CONFLICT DO NOTHING")




