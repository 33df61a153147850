"""Send a batch: claim the queued deliveries, build each reader's message, hand it to SMTP,
record each outcome.

Sending claims rows atomically (queued → sending) before any SMTP, so a batch enqueued
twice is sent once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter import db, verp
from newsletter.editions import claims
from newsletter.editions.content import BatchContent, load_batch
from newsletter.editions.deliveries import (
    GAVE_UP,
    MAX_ATTEMPTS,
    backoff,
    failure_kind,
    finish_if_complete,
    release,
)
from newsletter.mail import mailer, rendering
from newsletter.mail.compose import personal_links, personal_message
from newsletter.metrics import BATCH_SECONDS, EMAILS, SMTP_SECONDS
from newsletter.models import Delivery, Edition, Reader, utcnow
from newsletter.readers import bounces

log = logging.getLogger(__name__)

# Results are written every this many messages: a commit per message would cost more than
# the SMTP send on SQLite. In between, each accepted message is in the holder's journal
# (editions/claims.py), so a worker killed mid-batch resends at most the one in flight.
RECORD_EVERY = 50


def send_batch(session: Session, delivery_ids: Sequence[int],
               transport: mailer.SmtpTransport) -> dict[str, int]:
    """Claim the queued deliveries among ``delivery_ids``, send them, record each outcome.

    Rows of a paused edition are not claimed; a run of systemic failures pauses the edition
    and gives the rest of the batch back to the queue with their attempt unspent.
    """
    started = time.perf_counter()
    holder = claims.current()
    claimed = _claim(session, delivery_ids, holder)
    batch = _Batch(holder=holder)
    if not claimed:
        return batch.counts
    with holder.beating(session.get_bind()):
        _send(session, batch, claimed, transport)
    elapsed = time.perf_counter() - started
    BATCH_SECONDS.observe(elapsed)
    log.info("batch sent", extra={"edition_id": sorted({c.edition_id for c in claimed}),
                                  "counts": batch.counts,
                                  "delivery_ids": [c.id for c in claimed],
                                  "duration_s": round(elapsed, 3)})
    return batch.counts


def _claim(session: Session, delivery_ids: Sequence[int], holder: claims.Holder) -> list[Any]:
    """queued → sending in the holder's name, with the holder marked alive, in one commit."""
    paused_editions = select(Edition.id).where(Edition.status == "paused")
    holder.register(session)
    claimed = session.execute(
        update(Delivery)
        .where(db.one_of(session, Delivery.id, delivery_ids), Delivery.status == "queued",
               Delivery.edition_id.not_in(paused_editions))
        .values(status="sending", claimed_at=utcnow(), holder=holder.id,
                attempts=Delivery.attempts + 1)
        .returning(Delivery.id, Delivery.edition_id, Delivery.reader_id, Delivery.content_key,
                   Delivery.message_id, Delivery.attempts)
    ).all()
    session.commit()
    return list(claimed)


def _send(session: Session, batch: _Batch, claimed: list[Any],
          transport: mailer.SmtpTransport) -> None:
    readers = dict(session.execute(
        select(Reader.id, Reader.email).where(
            db.one_of(session, Reader.id, [c.reader_id for c in claimed if c.reader_id]),
            Reader.status == "active")
    ).all())
    editions = {e.id: e for e in session.scalars(
        select(Edition).where(Edition.id.in_({c.edition_id for c in claimed})))}
    renderer = rendering.renderer()
    contents = load_batch(session, {(c.edition_id, c.content_key) for c in claimed}, renderer)
    pending = {c.id: c for c in claimed}  # claimed, no outcome yet
    paused: str | None = None
    evicted = False
    try:
        # Pipelined: a message's outcome comes back with the next one's send (or the flush).
        with transport.pipeline() as smtp:
            for c in sorted(claimed, key=lambda c: c.content_key):
                email = readers.get(c.reader_id)
                if email is None:  # unsubscribed or erased since planning
                    batch.add(pending.pop(c.id), "suppressed", "reader no longer active")
                else:
                    message = _build(renderer, contents, batch, editions[c.edition_id], c,
                                     email)
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
                if batch.holder is not None and not batch.holder.may_send():
                    # Perhaps taken for dead (a stall, beats failing): the reconciler may
                    # have given our deliveries to someone else, and sending on (or
                    # flushing the open message) would double them. What was sent is
                    # recorded below; what we still hold goes back to the queue.
                    evicted = True
                    break
                if len(batch.outcomes) >= RECORD_EVERY:
                    _record(session, batch)
                    # Another batch of the edition may have paused it meanwhile.
                    paused = session.scalar(select(Edition.error).where(
                        Edition.id.in_(list(editions)), Edition.status == "paused").limit(1))
                    if paused is not None:
                        paused = paused or "paused"
                        break
            if not paused and not evicted:
                paused = _judge(batch, smtp.flush(), pending)
            # Paused: the message still open is dropped unsent with the session (pending).
        if evicted:
            log.warning("batch stopped: this process may have been taken for dead (no "
                        "heartbeat got through for half the holder timeout)",
                        extra={"holder": batch.holder_id})
        if paused:
            _pause(session, list(editions), paused)
        _record(session, batch)
    except BaseException:
        _salvage(session, batch, list(pending))
        raise
    if pending:
        release(session, list(pending), requeue=not paused, holder=batch.holder_id)
        batch.counts["released"] += len(pending)
        session.commit()
    for edition_id in editions:
        finish_if_complete(session, edition_id)


# How _build words a message it could not make; the edition's report lists these reasons.
UNBUILDABLE = "could not build the message"


def _build(renderer: rendering.Renderer, contents: BatchContent, batch: _Batch,
           edition: Edition, c: Any, email: str) -> bytes | None:
    """One reader's message, or None with the delivery failed and the reason recorded.

    Whatever goes wrong in rendering one content or personalising it for one reader fails
    those deliveries alone, with the reason: raised out of the batch, it would hand every
    claimed delivery back and the edition would retry the same error forever. Rendering
    reads no database (load_batch did, before: its errors end the batch, whose deliveries
    are not at fault and are handed back).
    """
    key = (c.edition_id, c.content_key)
    reason = batch.unbuildable.get(key)
    if reason is None:
        try:
            content = renderer.digest(contents[key])
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
    holder: claims.Holder | None = None  # journals each accepted message until recorded

    @property
    def holder_id(self) -> str | None:
        return self.holder.id if self.holder is not None else None

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
        if status == "sent" and self.holder is not None:
            self.holder.sent(c.id)
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
    if batch.holder is not None:
        batch.holder.recorded()
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
        release(session, unsent, requeue=False, holder=batch.holder_id)
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
