"""Send a batch: claim the queued deliveries, load what they need, build each reader's
message, push it to SMTP, record each outcome.

One :class:`PressRun` per batch holds the batch's whole state, and its methods are the
steps. Sending claims rows atomically (queued → sending) before any SMTP, so a batch
enqueued twice is sent once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from newsletter import events, sql, verp
from newsletter.editions import claims, deliveries
from newsletter.editions.content import BatchContent, load_batch
from newsletter.mail import mailer, rendering
from newsletter.mail.compose import personal_links, personal_message
from newsletter.metrics import BATCH_SECONDS, EMAILS, SMTP_SECONDS
from newsletter.models import Delivery, Edition, Reader, utcnow
from newsletter.readers import bounces
from newsletter.sending.verdicts import SYSTEMIC_RUN, bad_address, status_of, systemic
from newsletter.states import SENDABLE, DeliveryStatus, EditionStatus

log = logging.getLogger(__name__)

# Results are written every this many messages: a commit per message would cost more than
# the SMTP send on SQLite. In between, each accepted message is in the holder's journal
# (editions/claims.py), so a worker killed mid-batch resends at most the one in flight.
RECORD_EVERY = 50

# How a message that could not be made is worded; the edition's report lists these reasons.
UNBUILDABLE = "could not build the message"


def send_batch(session: Session, delivery_ids: Sequence[int],
               transport: mailer.SmtpTransport) -> dict[str, int]:
    """Claim the queued deliveries among ``delivery_ids``, send them, record each outcome.

    Rows of a paused edition are not claimed; a run of systemic failures pauses the edition
    and gives the rest of the batch back to the queue with their attempt unspent.
    """
    run = PressRun(session, transport, claims.current())
    if run.claim(delivery_ids):
        with run.holder.beating(session.get_bind()):
            run.send()
    return run.finish()


@dataclass(eq=False)
class PressRun:
    """One batch going out: what it claimed, what it needs to build the messages, and what
    became of each message so far."""

    session: Session
    transport: mailer.SmtpTransport
    holder: claims.Holder  # names the claims; journals each accepted message until recorded
    begun: float = field(default_factory=time.perf_counter)
    claimed: list[Any] = field(default_factory=list)  # rows: id, edition, reader, content …
    readers: dict[int, str] = field(default_factory=dict)  # active readers' addresses
    editions: dict[int, Edition] = field(default_factory=dict)
    renderer: rendering.Renderer | None = None
    contents: BatchContent = field(default_factory=dict)
    pending: dict[int, Any] = field(default_factory=dict)  # claimed, no outcome yet
    handed: dict[int, float] = field(default_factory=dict)  # delivery id → handed to SMTP
    # Outcomes not yet written: (delivery id, status, error, attempts).
    outcomes: list[tuple[int, str, str | None, int]] = field(default_factory=list)
    bounced: list[tuple[int, int, str]] = field(default_factory=list)  # reader, edition, why
    counts: dict[str, int] = field(default_factory=lambda: {
        "sent": 0, "failed": 0, "retry": 0, "suppressed": 0, "released": 0})
    run: list[Any] = field(default_factory=list)  # the current run of temporary failures
    # Contents (edition, content key) that failed to render in this batch, and why.
    unbuildable: dict[tuple[int, str], str] = field(default_factory=dict)
    paused: str | None = None  # why the edition pauses (a systemic failure), once it does
    evicted: bool = False  # taken for dead: stop sending, give back what we hold

    # --- the steps ---

    def claim(self, delivery_ids: Sequence[int]) -> bool:
        """queued → sending in the holder's name, with the holder marked alive, in one
        commit; whether anything was claimed."""
        session = self.session
        paused_editions = select(Edition.id).where(Edition.status == EditionStatus.PAUSED)
        self.holder.register(session)
        now = utcnow()
        self.claimed = list(session.execute(
            update(Delivery)
            .where(sql.one_of(session, Delivery.id, delivery_ids),
                   Delivery.status == DeliveryStatus.QUEUED,
                   # Never before its wave (a task that found it early leaves it held).
                   or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
                   Delivery.edition_id.not_in(paused_editions))
            .values(status=DeliveryStatus.SENDING, claimed_at=now, holder=self.holder.id,
                    attempts=Delivery.attempts + 1)
            .returning(Delivery.id, Delivery.edition_id, Delivery.reader_id,
                       Delivery.content_key, Delivery.message_id, Delivery.attempts)
        ).all())
        session.commit()
        return bool(self.claimed)

    def load(self) -> None:
        """The claimed deliveries' active readers, their editions and their contents.

        Outside the salvage below: a load that fails ends the batch with its deliveries
        still claimed, not at fault, and the reconciler hands them back."""
        session, claimed = self.session, self.claimed
        self.readers = dict(session.execute(
            select(Reader.id, Reader.email).where(
                sql.one_of(session, Reader.id, [c.reader_id for c in claimed if c.reader_id]),
                Reader.status == "active")
        ).all())
        self.editions = {e.id: e for e in session.scalars(
            select(Edition).where(Edition.id.in_({c.edition_id for c in claimed})))}
        self.renderer = rendering.renderer()
        self.contents = load_batch(session, {(c.edition_id, c.content_key) for c in claimed},
                                   self.renderer)
        self.pending = {c.id: c for c in claimed}

    def send(self) -> None:
        """Load, push every message, record the outcomes and give back what was not sent."""
        self.load()
        try:
            self.push_all()
            if self.evicted:
                log.warning("batch stopped: this process may have been taken for dead (no "
                            "heartbeat got through for half the holder timeout)",
                            extra={"holder": self.holder.id})
            if self.paused:
                self.pause()
            self.record()
        except BaseException:
            self.salvage()
            raise
        self.release()
        for edition_id in self.editions:
            deliveries.finish_if_complete(self.session, edition_id)

    def push_all(self) -> None:
        """Each message in content order (a content's readers together), then the flush."""
        try:
            for c in sorted(self.claimed, key=attrgetter("content_key")):
                email = self.readers.get(c.reader_id)
                message = self.build(c, email)
                if message is not None:
                    self.push(c, email, message)
                if self.paused or self.stopping():
                    break
            else:
                # Pipelined: the last message's outcome comes back with the flush.
                self.judge(self.transport.flush())
                return
        except BaseException:
            self.transport.close()  # the message still open is dropped, unsent (pending)
            raise
        # Paused or evicted: the message still open is dropped unsent (it stays pending).
        self.transport.close()

    def build(self, c: Any, email: str | None) -> bytes | None:
        """One reader's message, or None with the delivery's outcome noted.

        Whatever goes wrong in rendering one content or personalising it for one reader fails
        those deliveries alone, with the reason: raised out of the batch, it would hand every
        claimed delivery back and the edition would retry the same error forever. Rendering
        reads no database (load did, before: its errors end the batch, whose deliveries are
        not at fault and are handed back).
        """
        if email is None:  # unsubscribed or erased since planning
            self.note(self.pending.pop(c.id), DeliveryStatus.SUPPRESSED, "reader no longer active")
            return None
        key = (c.edition_id, c.content_key)
        reason = self.unbuildable.get(key)
        if reason is None:
            try:
                content = self.renderer.digest(self.contents[key])
            except Exception as exc:
                # The content failed, not this reader: its other readers would fail the same
                # way, so it is not rendered again for them in this batch.
                reason = self.unbuildable[key] = _unbuildable(c, exc, "rendering its digest")
            else:
                try:
                    return personal_message(
                        content, personal_links(c.reader_id, email, c.edition_id, c.id), c.message_id)
                except Exception as exc:  # this reader's values: an address MIME refuses, …
                    reason = _unbuildable(c, exc, "addressing it")
        self.note(self.pending.pop(c.id), DeliveryStatus.FAILED, reason)
        return None

    def push(self, c: Any, email: str, message: bytes) -> None:
        """Hand one message to the transport and judge the outcomes that came back."""
        self.handed[c.id] = time.perf_counter()
        try:
            # Its own envelope sender (VERP): a bounce names this delivery.
            outcomes = self.transport.push(verp.envelope_sender("d", c.id, email), email,
                                           message, c)
        except ValueError as exc:  # an address no message can be addressed to
            del self.handed[c.id]
            self.note(self.pending.pop(c.id), DeliveryStatus.FAILED, f"unsendable: {exc}")
        else:
            self.judge(outcomes)

    def judge(self, outcomes: list[mailer.Outcome]) -> None:
        """Take the SMTP outcomes in the order they came; a systemic one pauses the run."""
        for c, exc in outcomes:
            # MAIL to final reply: with pipelining these come in two different calls.
            SMTP_SECONDS.observe(time.perf_counter() - self.handed.pop(c.id))
            status, error = status_of(exc, c.attempts)
            self.paused = self.take(c, status, error, exc)
            if self.paused:
                return

    def take(self, c: Any, status: str, error: str | None,
             exc: mailer.MailerError | None) -> str | None:
        """Take one SMTP outcome; the reason to pause the edition, if it is systemic."""
        if exc is not None and systemic(exc):
            # Our credentials or TLS, not this reader: the delivery keeps its attempt.
            self.unspend_run()
            return f"SMTP {exc.stage} failed: {exc.code or ''} {exc.reason}".replace("  ", " ")
        if status == DeliveryStatus.RETRY:
            self.run.append(c)
            if len(self.run) >= SYSTEMIC_RUN:
                self.unspend_run()
                return f"{SYSTEMIC_RUN} temporary SMTP failures in a row, last: {error}"
        else:
            self.run.clear()
            if exc is not None and c.reader_id and bad_address(exc):
                self.bounced.append((c.reader_id, c.edition_id, error or ""))
        self.pending.pop(c.id, None)
        self.note(c, status, error)
        if status == DeliveryStatus.SENT:
            self.holder.sent(c.id)
        return None

    def unspend_run(self) -> None:
        # The run's failures were the relay's, not the readers': give them back unspent.
        ids = {c.id for c in self.run}
        self.outcomes[:] = [o for o in self.outcomes if o[0] not in ids]
        for c in self.run:
            self.pending[c.id] = c
        self.run.clear()

    def stopping(self) -> bool:
        """Whether to stop before the next message: taken for dead, or the edition paused
        elsewhere (checked as the outcomes are recorded, every RECORD_EVERY)."""
        if not self.holder.may_send():
            # Perhaps taken for dead (a stall, beats failing): the reconciler may have given
            # our deliveries to someone else, and sending on (or flushing the open message)
            # would double them. What was sent is recorded; what we still hold goes back.
            self.evicted = True
            return True
        if len(self.outcomes) >= RECORD_EVERY:
            self.record()
            # Another batch of the edition may have paused it meanwhile.
            row = self.session.execute(select(Edition.id, Edition.error).where(
                Edition.id.in_(list(self.editions)),
                Edition.status == EditionStatus.PAUSED).limit(1)).first()
            if row is not None:
                self.paused = row.error or "paused"
        return self.paused is not None

    def note(self, c: Any, status: str, error: str | None) -> None:
        self.outcomes.append((c.id, status, error, c.attempts))

    def record(self) -> None:
        """Write the outcomes so far and suppress the addresses that bounced, in one commit;
        then the journal can start afresh."""
        session, now, counts = self.session, utcnow(), self.counts
        # The common outcome in one statement: an UPDATE per sent message cost more than its
        # SMTP.
        sent = [o[0] for o in self.outcomes if o[1] == DeliveryStatus.SENT]
        if sent:
            session.execute(update(Delivery).where(sql.one_of(session, Delivery.id, sent))
                            .values(status=DeliveryStatus.SENT, last_error=None, sent_at=now))
            counts["sent"] += len(sent)
            EMAILS.labels("edition", "sent", "").inc(len(sent))
        for delivery_id, status, error, attempts in self.outcomes:
            if status != DeliveryStatus.SENT:
                self._record_one(delivery_id, status, error, attempts, now)
        for reader_id, edition_id, error in self.bounced:
            reader = session.get(Reader, reader_id)
            if reader is not None:
                bounces.suppress_reader(session, reader, "bounce", edition_id,
                                        {"kind": "hard", "status": error[:500], "via": "smtp"})
        session.commit()
        self.holder.recorded()
        self.outcomes.clear()
        self.bounced.clear()

    def _record_one(self, delivery_id: int, status: str, error: str | None, attempts: int,
                    now: Any) -> None:
        values: dict[str, Any] = {"status": status, "last_error": error}
        if status == DeliveryStatus.FAILED:
            values["failure"] = deliveries.failure_kind(error)
        elif status == DeliveryStatus.RETRY:
            values["next_attempt_at"] = now + deliveries.backoff(attempts)
        self.session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
        self.counts[status] += 1
        reason = values.get("failure") or ("temporary" if status == DeliveryStatus.RETRY else "")
        EMAILS.labels("edition", str(status), reason).inc()
        if status in (DeliveryStatus.FAILED, DeliveryStatus.RETRY):
            log.info("delivery %s", status, extra={"delivery_id": delivery_id, "reason": error})

    def pause(self) -> None:
        """A systemic failure: pause the batch's editions, with the reason."""
        edition_ids = list(self.editions)
        paused = self.session.scalars(update(Edition).where(Edition.id.in_(edition_ids),
                                                            Edition.status.in_(SENDABLE))
                                      .values(status=EditionStatus.PAUSED, error=self.paused[:1000])
                                      .returning(Edition.id)).all()
        for edition_id in paused:  # the reason stays in the console: it can quote an address
            events.record(self.session, events.EDITION_PAUSED, edition_id=edition_id)
        log.warning("edition paused", extra={"edition_id": edition_ids, "reason": self.paused})

    def salvage(self) -> None:
        """After an error mid-batch: keep what was sent, give back what was not."""
        unsent = list(self.pending)
        try:
            # A dropped database connection is replaced here; the sent ones must be recorded
            # or they go out again after the lease.
            self.session.rollback()
            self.record()
            # Not re-enqueued now: an error that repeats (a bad template) would spin. The
            # reconciler re-enqueues them once the lease has passed.
            deliveries.release(self.session, unsent, requeue=False, holder=self.holder.id)
            self.session.commit()
        except Exception:
            self.session.rollback()
            log.exception("could not record a failed batch; the reconciler takes back its "
                          "deliveries after the lease", extra={"delivery_ids": unsent})

    def release(self) -> None:
        """Give what was claimed and not sent back to the queue, its attempt unspent; a
        paused edition's wait for its resume rather than a worker."""
        if self.pending:
            deliveries.release(self.session, list(self.pending), requeue=not self.paused,
                               holder=self.holder.id)
            self.counts["released"] += len(self.pending)
            self.session.commit()

    def finish(self) -> dict[str, int]:
        """The batch's metrics and log line; its counts."""
        if self.claimed:
            elapsed = time.perf_counter() - self.begun
            BATCH_SECONDS.observe(elapsed)
            log.info("batch sent", extra={
                "edition_id": sorted({c.edition_id for c in self.claimed}),
                "counts": self.counts, "delivery_ids": [c.id for c in self.claimed],
                "duration_s": round(elapsed, 3)})
        return self.counts


def _unbuildable(c: Any, exc: Exception, stage: str) -> str:
    log.error("delivery failed: its message could not be built (%s)", stage, exc_info=exc,
              extra={"delivery_id": c.id, "edition_id": c.edition_id,
                     "content_key": c.content_key})
    return f"{UNBUILDABLE} ({stage}): {type(exc).__name__}: {exc}"[:500]
