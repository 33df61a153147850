"""Deliveries: plan an edition into rows, then claim, send and record them in batches.

Planning streams readers by id cursor and commits page by page, so sending starts while
planning goes on and a crash resumes where it stopped (readers who already have a
delivery are skipped). Sending claims rows atomically (queued → sending) before any SMTP,
so a batch enqueued twice is sent once.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter import db, events, verp
from newsletter.config import get_settings
from newsletter.editions import selection as digests
from newsletter.editions.content import content_versions, digest_message
from newsletter.mail import mailer
from newsletter.mail.compose import personal_links, personal_message
from newsletter.metrics import BATCH_SECONDS, EMAILS, SMTP_SECONDS
from newsletter.models import (
    Delivery,
    Edition,
    EditionDigest,
    Reader,
    utcnow,
)
from newsletter.readers import bounces

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Results are written every this many messages: a commit per message would cost more than
# the SMTP send on SQLite, and a worker killed mid-batch resends at most this many.
RECORD_EVERY = 50
OPEN = ("queued", "sending", "retry")
# How _send words a temporary failure it stopped retrying; failure_kind() reads it back.
GAVE_UP = "gave up after"


# ---------------------------------------------------------------- planning

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
            made += _plan_page(session, edition, candidates, page, settings.mail_domain)
            session.commit()
        except IntegrityError:
            # A concurrent planner took some of these readers or articles first; deciding
            # the page again sees what it committed.
            session.rollback()
            made += _plan_page(session, edition, candidates, page, settings.mail_domain)
            session.commit()
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
    edition.plan_report = _plan_report(session, edition, readers)
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
               page: list[digests.ReaderRow], domain: str) -> int:
    ids = [r.id for r in page]
    planned = set(session.scalars(
        select(Delivery.reader_id).where(Delivery.edition_id == edition.id,
                                         db.one_of(session, Delivery.reader_id, ids))))
    todo = [r for r in page if r.id not in planned]
    chosen = digests.decide_page(session, candidates, todo)
    if not chosen:
        return 0
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
    return len(rows)


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
    """What a dry run would send, tallied page by page (nothing is written)."""

    emails: int = 0
    content_keys: set[str] = field(default_factory=set)
    articles: set[int] = field(default_factory=set)

    def add(self, chosen: list[digests.Digest]) -> None:
        self.emails += len(chosen)
        for d in chosen:
            self.content_keys.add(d.content_key)
            self.articles.update(d.article_ids)

    def report(self, readers: int) -> dict[str, int]:
        return {"readers": readers, "emails": self.emails,
                "distinct_digests": len(self.content_keys), "articles": len(self.articles)}


def _plan_report(session: Session, edition: Edition, readers: int) -> dict[str, int]:
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


def finish_if_complete(session: Session, edition_id: int, commit: bool = True) -> bool:
    """Mark a sending edition done once nothing is left open; returns True if it did."""
    still_open = select(Delivery.id).where(Delivery.edition_id == edition_id,
                                           Delivery.status.in_(OPEN)).exists()
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status == "sending", ~still_open)
        .values(status="done", finished_at=utcnow())
    )
    if commit:
        session.commit()
    return result.rowcount == 1



# ---------------------------------------------------------------- sending

def send_batch(session: Session, delivery_ids: Sequence[int],
               transport: mailer.SmtpTransport) -> dict[str, int]:
    """Claim the queued deliveries among ``delivery_ids``, send them, record each outcome.

    Rows of a paused edition are not claimed; a run of systemic failures pauses the edition
    and gives the rest of the batch back to the queue with their attempt unspent.
    """
    started = time.perf_counter()
    now = utcnow()
    paused_editions = select(Edition.id).where(Edition.status == "paused")
    claimed = session.execute(
        update(Delivery)
        .where(db.one_of(session, Delivery.id, delivery_ids), Delivery.status == "queued",
               Delivery.edition_id.not_in(paused_editions))
        .values(status="sending", claimed_at=now, attempts=Delivery.attempts + 1)
        .returning(Delivery.id, Delivery.edition_id, Delivery.reader_id, Delivery.content_key,
                   Delivery.message_id, Delivery.attempts)
    ).all()
    session.commit()
    batch = _Batch()
    if not claimed:
        return batch.counts
    readers = dict(session.execute(
        select(Reader.id, Reader.email).where(
            db.one_of(session, Reader.id, [c.reader_id for c in claimed if c.reader_id]),
            Reader.status == "active")
    ).all())
    editions = {e.id: e for e in session.scalars(
        select(Edition).where(Edition.id.in_({c.edition_id for c in claimed})))}
    versions = content_versions(session, {(c.edition_id, c.content_key) for c in claimed})
    pending = {c.id: c for c in claimed}  # claimed, no outcome yet
    paused: str | None = None
    try:
        # Pipelined: a message's outcome comes back with the next one's send (or the flush).
        with transport.pipeline() as smtp:
            for c in sorted(claimed, key=lambda c: c.content_key):
                email = readers.get(c.reader_id)
                if email is None:  # unsubscribed or erased since planning
                    batch.add(pending.pop(c.id), "suppressed", "reader no longer active")
                else:
                    message = _build(session, batch, editions[c.edition_id], c, email,
                                     versions.get((c.edition_id, c.content_key), ""))
                    if message is None:  # this reader's message could not be made
                        pending.pop(c.id)
                    else:
                        batch.started[c.id] = time.perf_counter()
                        try:
                            # Its own envelope sender (VERP): a bounce names this delivery.
                            outcomes = smtp.send(verp.envelope_sender("d", c.id, email), email,
                                                 message, c)
                        except ValueError as exc:  # an address no message can be addressed to
                            batch.add(pending.pop(c.id), "failed", f"unsendable: {exc}")
                        else:
                            paused = _judge(batch, outcomes, pending)
                            if paused:
                                break
                if len(batch.outcomes) >= RECORD_EVERY:
                    _record(session, batch)
                    # Another batch of the edition may have paused it meanwhile.
                    paused = session.scalar(select(Edition.error).where(
                        Edition.id.in_(list(editions)), Edition.status == "paused").limit(1))
                    if paused is not None:
                        paused = paused or "paused"
                        break
            if not paused:
                paused = _judge(batch, smtp.flush(), pending)
            # Paused: the message still open is dropped unsent with the session (pending).
        if paused:
            _pause(session, list(editions), paused)
        _record(session, batch)
    except BaseException:
        _salvage(session, batch, list(pending))
        raise
    if pending:
        release(session, list(pending), requeue=not paused)
        batch.counts["released"] += len(pending)
        session.commit()
    for edition_id in editions:
        finish_if_complete(session, edition_id)
    elapsed = time.perf_counter() - started
    BATCH_SECONDS.observe(elapsed)
    log.info("batch sent", extra={"edition_id": sorted(editions), "counts": batch.counts,
                                  "delivery_ids": [c.id for c in claimed],
                                  "duration_s": round(elapsed, 3)})
    return batch.counts


# How _build words a message it could not make; the edition's report lists these reasons.
UNBUILDABLE = "could not build the message"


def _build(session: Session, batch: _Batch, edition: Edition, c: Any, email: str,
           version: str) -> bytes | None:
    """One reader's message, or None with the delivery failed and the reason recorded.

    Whatever goes wrong in rendering one content or personalising it for one reader fails
    those deliveries alone, with the reason: raised out of the batch, it would hand every
    claimed delivery back and the edition would retry the same error forever. Database
    errors still end the batch (its deliveries are not at fault and are handed back).
    """
    key = (c.edition_id, c.content_key)
    reason = batch.unbuildable.get(key)
    if reason is None:
        try:
            content = digest_message(session, edition, c.content_key, version)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            # The content failed, not this reader: its other readers would fail the same
            # way, so it is not rendered again for them in this batch.
            reason = batch.unbuildable[key] = _unbuildable(c, exc, "rendering its digest")
        else:
            try:
                return personal_message(
                    content, personal_links(c.reader_id, email, edition.id), c.message_id)
            except Exception as exc:  # this reader's values: an address MIME refuses, …
                reason = _unbuildable(c, exc, "addressing it")
    batch.add(c, "failed", reason)
    return None


def _unbuildable(c: Any, exc: Exception, stage: str) -> str:
    log.error("delivery failed: its message could not be built (%s)", stage, exc_info=exc,
              extra={"delivery_id": c.id, "edition_id": c.edition_id,
                     "content_key": c.content_key})
    return f"{UNBUILDABLE} ({stage}): {type(exc).__name__}: {exc}"[:500]


@dataclass
class _Batch:
    """Outcomes not yet written, the addresses to suppress, and the running counts."""

    outcomes: list[tuple[int, str, str | None, int]] = field(default_factory=list)
    bounced: list[tuple[int, int, str]] = field(default_factory=list)  # reader, edition, why
    counts: dict[str, int] = field(default_factory=lambda: {
        "sent": 0, "failed": 0, "retry": 0, "suppressed": 0, "released": 0})
    run: list[Any] = field(default_factory=list)  # the current run of temporary failures
    started: dict[int, float] = field(default_factory=dict)  # delivery id → handed to SMTP
    # Contents (edition, content key) that failed to render in this batch, and why.
    unbuildable: dict[tuple[int, str], str] = field(default_factory=dict)

    def add(self, c: Any, status: str, error: str | None) -> None:
        self.outcomes.append((c.id, status, error, c.attempts))

    def judge(self, c: Any, status: str, error: str | None, exc: mailer.MailerError | None,
              pending: dict[int, Any]) -> str | None:
        """Take one SMTP outcome; the reason to pause the edition, if it is systemic."""
        if exc is not None and _systemic(exc):
            # Our credentials or TLS, not this reader: the delivery keeps its attempt.
            self._unspend_run(pending)
            return f"SMTP {exc.stage} failed: {exc.code or ''} {exc.reason}".replace("  ", " ")
        if status == "retry":
            self.run.append(c)
            if len(self.run) >= SYSTEMIC_RUN:
                self._unspend_run(pending)
                return f"{SYSTEMIC_RUN} temporary SMTP failures in a row, last: {error}"
        else:
            self.run.clear()
            if exc is not None and c.reader_id and _bad_address(exc):
                self.bounced.append((c.reader_id, c.edition_id, error or ""))
        pending.pop(c.id, None)
        self.add(c, status, error)
        return None

    def _unspend_run(self, pending: dict[int, Any]) -> None:
        # The run's failures were the relay's, not the readers': give them back unspent.
        ids = {c.id for c in self.run}
        self.outcomes[:] = [o for o in self.outcomes if o[0] not in ids]
        for c in self.run:
            pending[c.id] = c
        self.run.clear()


# Five readers in a row failing temporarily is the relay or the network, not five mailboxes:
# per-reader trouble (greylisting, a full mailbox) comes scattered among successes. Going on
# would spend an attempt of every reader left and drive the edition into the dead letter.
SYSTEMIC_RUN = 5
_BAD_MAILBOX = re.compile(r"(?<![\d.])5\.1\.\d{1,3}\b")


def _systemic(exc: mailer.MailerError) -> bool:
    # A 5xx before any recipient (auth, TLS, greeting) refuses us, not one reader.
    return isinstance(exc, mailer.PermanentFailure) and exc.stage in ("connect", "auth")


def _bad_address(exc: mailer.MailerError) -> bool:
    """A 5.1.x at RCPT: the mailbox does not exist (RFC 3463), so stop mailing it."""
    return (isinstance(exc, mailer.PermanentFailure) and exc.stage == "rcpt"
            and bool(_BAD_MAILBOX.search(exc.reason or "")))


def _judge(batch: _Batch, outcomes: list[tuple[Any, mailer.MailerError | None]],
           pending: dict[int, Any]) -> str | None:
    """Take the SMTP outcomes in the order they came; the reason to pause, if systemic."""
    for c, exc in outcomes:
        # MAIL to final reply: with pipelining these come in two different calls.
        SMTP_SECONDS.observe(time.perf_counter() - batch.started.pop(c.id))
        status, error = _status(exc, c.attempts)
        paused = batch.judge(c, status, error, exc, pending)
        if paused:
            return paused
    return None


def _status(exc: mailer.MailerError | None, attempts: int) -> tuple[str, str | None]:
    if exc is None:
        return "sent", None
    if isinstance(exc, mailer.PermanentFailure):
        return "failed", f"{exc.code} {exc.reason}"
    if attempts >= MAX_ATTEMPTS:
        return "failed", f"{GAVE_UP} {attempts} attempts: {exc.code} {exc.reason}"
    return "retry", f"{exc.code} {exc.reason}"


def failure_kind(error: str | None) -> str:
    """'temporary' for a delivery that gave up retrying, else 'permanent' (5xx, unsendable)."""
    return "temporary" if (error or "").startswith(GAVE_UP) else "permanent"


def _record(session: Session, batch: _Batch) -> None:
    now = utcnow()
    counts = batch.counts
    # The common outcome in one statement: an UPDATE per sent message cost more than its SMTP.
    sent = [o[0] for o in batch.outcomes if o[1] == "sent"]
    if sent:
        session.execute(update(Delivery).where(db.one_of(session, Delivery.id, sent))
                        .values(status="sent", last_error=None, sent_at=now))
        counts["sent"] += len(sent)
        EMAILS.labels("edition", "sent", "").inc(len(sent))
    for delivery_id, status, error, attempts in batch.outcomes:
        if status == "sent":
            continue
        values: dict[str, Any] = {"status": status, "last_error": error}
        if status == "failed":
            values["failure"] = failure_kind(error)
        elif status == "retry":
            values["next_attempt_at"] = now + backoff(attempts)
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
        counts[status] += 1
        reason = values.get("failure") or ("temporary" if status == "retry" else "")
        EMAILS.labels("edition", status, reason).inc()
        if status in ("failed", "retry"):
            log.info("delivery %s", status, extra={"delivery_id": delivery_id, "reason": error})
    for reader_id, edition_id, error in batch.bounced:
        reader = session.get(Reader, reader_id)
        if reader is not None:
            bounces.suppress_reader(session, reader, "bounce", edition_id,
                                    {"kind": "hard", "status": error[:500], "via": "smtp"})
    session.commit()
    batch.outcomes.clear()
    batch.bounced.clear()


def _salvage(session: Session, batch: _Batch, unsent: list[int]) -> None:
    """After an error mid-batch: keep what was sent, give back what was not."""
    try:
        # A dropped database connection is replaced here; the sent ones must be recorded or
        # they go out again after the lease.
        session.rollback()
        _record(session, batch)
        # Not re-enqueued now: an error that repeats (a bad template) would spin. The
        # reconciler re-enqueues them once the lease has passed.
        release(session, unsent, requeue=False)
        session.commit()
    except Exception:
        session.rollback()
        log.exception("could not record a failed batch; the reconciler takes back its "
                      "deliveries after the lease", extra={"delivery_ids": unsent})


def _pause(session: Session, edition_ids: list[int], reason: str) -> None:
    session.execute(update(Edition).where(Edition.id.in_(edition_ids),
                                          Edition.status.in_(("planning", "sending")))
                    .values(status="paused", error=reason[:1000]))
    log.warning("edition paused", extra={"edition_id": edition_ids, "reason": reason})


def release(session: Session, delivery_ids: Sequence[int], *, requeue: bool) -> int:
    """Give claimed deliveries back to the queue with their attempt unspent (no commit)."""
    if not delivery_ids:
        return 0
    rows = session.execute(
        update(Delivery)
        .where(db.one_of(session, Delivery.id, delivery_ids), Delivery.status == "sending")
        .values(status="queued", attempts=Delivery.attempts - 1, claimed_at=None,
                queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    if requeue:
        enqueue(session, rows)
    return len(rows)


def enqueue(session: Session, rows: Sequence[tuple[int, int]]) -> None:
    """Record the events that send (delivery id, edition id) pairs, a batch per event."""
    size = get_settings().batch_size
    by_edition: dict[int, list[int]] = {}
    for delivery_id, edition_id in rows:
        by_edition.setdefault(edition_id, []).append(delivery_id)
    for edition_id, ids in by_edition.items():
        for i in range(0, len(ids), size):
            events.record(session, events.DELIVERIES_QUEUED, edition_id=edition_id,
                          delivery_ids=ids[i:i + size])


def backoff(attempt: int) -> timedelta:
    """Wait before retry ``attempt`` + 1: 1, 2, 4, 8 … minutes (retry_base_s), ±50 %."""
    # Jitter spreads a failed burst so retries do not hit the relay in lockstep.
    base = get_settings().retry_base_s
    return timedelta(seconds=base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))


def requeue_due(session: Session) -> int:
    """Put deliveries whose retry time has come back in the queue; returns how many."""
    # A paused edition's retries wait for resume (which re-enqueues them).
    due = session.execute(
        update(Delivery)
        .where(and_(Delivery.status == "retry", Delivery.next_attempt_at <= utcnow()),
               Delivery.edition_id.not_in(select(Edition.id).where(Edition.status == "paused")))
        .values(status="queued", queued_at=utcnow())
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    enqueue(session, due)
    session.commit()
    return len(due)
