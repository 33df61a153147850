"""Bounces and complaints: what a report does to a reader.

Only a report about a message we sent counts: one whose VERP token (newsletter/verp.py:
the address the report was returned to, or the returned message's Return-Path) verifies
for the delivery or notice it names, or one that returns the Message-ID of a delivery of
ours together with that delivery's address (as the failed recipient, or as our signed
unsubscribe link in the returned headers). Anyone can write a report naming a reader's
address; a report that names nothing we sent is recorded with why it was ignored
(``BounceEvent.unmatched``) and changes nothing, and soft bounces score only matched reports.

A hard bounce or a complaint suppresses the address at once: the reader is unsubscribed
with a ``withdrawn`` ledger entry (method ``bounce`` / ``complaint``), the address goes on
the suppression list and anything still queued for them is suppressed. A soft bounce is
only recorded; the reader is suppressed when soft bounces reach the limit in
``Settings.soft_bounce_limit`` / ``soft_bounce_days``. Every report is kept in
``bounce_events``, one row per (original message, recipient, kind), so ingesting the same
report twice changes nothing.

A later successful send does not reset the soft-bounce count: our relay accepting a
message says nothing about the remote mailbox, so "sent" is no evidence it recovered; the
window lets old bounces expire instead.

Reports about an address we have no reader for (backscatter from forged mail, a reader
since erased) are recorded and suppress nothing: we never mailed them.

A report is read in linear time from a bounded part of it (newsletter/bounce_reports.py);
a message built to be costly to read is refused unread and counted as ``ignored``.
"""

from __future__ import annotations

import hashlib
import logging
import mailbox
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter import events, follows, sql, tokens, verp
from newsletter.config import get_settings
from newsletter.errors import BounceSourceError  # noqa: F401 - re-exported
from newsletter.models import BounceEvent, Delivery, Reader, utcnow
from newsletter.readers import consent
from newsletter.readers.bounce_reports import Report, UnreadableReport, parse
from newsletter.readers.subscriptions import SubscriptionError, normalise_email
from newsletter.states import UNSENT, DeliveryStatus

__all__ = ["BounceSourceError", "IngestResult", "Report", "ingest", "ingest_path", "parse"]

log = logging.getLogger(__name__)

# Messages per commit when reading a mailbox: a crash re-reads at most this many (ingest
# is idempotent) and no transaction holds its locks for a whole mailbox.
CHUNK = 100
DIAGNOSTIC_MAX = 500
# Soft bounces must fall on this many different days (or on as many as the limit, if the
# operator set it lower) so that one bad day at a provider never suppresses anyone.
SOFT_MIN_DAYS = 2
# Anchored at the start of a run of address characters (the look-behind), so a long run
# without "@" is scanned once, not once per character: linear, not quadratic.
_ADDRESS = re.compile(r"(?<![^\s<>@\"';,()])[^\s<>@\"';,()]+@([A-Za-z0-9.-]+)")
# The diagnostic is read no further than this before redaction (it is stored cut to 500).
DIAGNOSTIC_READ = 4096


@dataclass
class IngestResult:
    """What ingesting did: new reports by kind, messages with none, readers suppressed."""

    hard: int = 0  # reports about a message we sent, by kind
    soft: int = 0
    complaints: int = 0
    unmatched: int = 0  # reports naming no message we sent: recorded, nothing changed
    ignored: int = 0  # messages that were no bounce or complaint report (or unreadable)
    suppressed: int = 0  # readers newly suppressed
    duplicates: int = 0  # reports already ingested before

    def __iadd__(self, other: IngestResult) -> IngestResult:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def ingest(session: Session, raw: bytes, *, source: str) -> IngestResult:
    """Record the reports in one raw message and suppress whom they condemn (no commit)."""
    result = IngestResult()
    try:
        reports = parse(raw)
    except UnreadableReport as exc:
        log.warning("bounce message refused unread", extra={"reason": str(exc)})
        reports = []
    except Exception:  # mail from anywhere: one malformed message must not stop a mailbox
        log.warning("unreadable bounce message ignored", exc_info=True)
        reports = []
    if not reports:
        result.ignored += 1
    for report in reports:
        _apply(session, report, source, result)
    return result


def ingest_path(session: Session, path: str | Path) -> IngestResult:
    """Ingest every message in a Maildir, an mbox file or one message file, committing in chunks."""
    total = IngestResult()
    for count, raw in enumerate(_messages(Path(path)), 1):
        total += ingest(session, raw, source="mailbox")
        if count % CHUNK == 0:
            session.commit()
    session.commit()
    return total


def _messages(path: Path) -> Iterator[bytes]:
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            box = mailbox.Maildir(str(path), factory=None, create=False)
            yield from _box_messages(box)
            return
        files = sorted(path.glob("*.eml"))
        if not files:
            raise BounceSourceError(
                f"{path} is neither a Maildir (cur/, new/) nor a folder of .eml files")
        for file in files:
            yield file.read_bytes()
        return
    if not path.is_file():
        raise BounceSourceError(f"{path} does not exist")
    with path.open("rb") as f:
        is_mbox = f.read(5) == b"From "
    if is_mbox:
        yield from _box_messages(mailbox.mbox(str(path), factory=None, create=False))
    else:
        yield path.read_bytes()


def _box_messages(box: mailbox.Mailbox) -> Iterator[bytes]:
    for key in box.iterkeys():
        try:
            yield box.get_bytes(key)
        except KeyError:  # another process removed it while we read
            continue


# ---------------------------------------------------------------- policy

def _apply(session: Session, report: Report, source: str, result: IngestResult) -> None:
    match = _match(session, report)
    key = _dedupe_key(report, match)
    if session.scalar(select(BounceEvent.id).where(BounceEvent.dedupe_key == key)) is not None:
        result.duplicates += 1
        return
    reader, delivery = match.reader, match.delivery
    address = reader.email if reader else (_normalise(report.recipient)
                                           if report.recipient else None)
    values = {
        "reader_id": reader.id if reader else None,
        "email_hash": consent.email_hash(address) if address else None,
        "kind": report.kind,
        "status": report.status or report.feedback_type,
        "diagnostic": _redacted(report.diagnostic[:DIAGNOSTIC_READ])[:DIAGNOSTIC_MAX],
        "message_id": (report.original_message_id or "")[:255] or None,
        "delivery_id": delivery.id if delivery else None,
        "source": source[:16],
        "dedupe_key": key,
        "received_at": _plausible(report.reported_at),
        "unmatched": match.unmatched,
    }
    # ON CONFLICT rather than a savepoint (see editions._insert_once): another process may
    # be ingesting the same report right now.
    inserted = sql.insert_unless_present(session, BounceEvent.__table__, values,
                                         ["dedupe_key"], BounceEvent.id)
    if inserted is None:
        result.duplicates += 1
        return
    if reader is None:
        result.unmatched += 1
        return
    if report.kind == "hard":
        result.hard += 1
    elif report.kind == "soft":
        result.soft += 1
    else:
        result.complaints += 1
    details = {"kind": report.kind, "status": values["status"],
               "diagnostic": report.diagnostic[:DIAGNOSTIC_MAX],
               "message_id": values["message_id"], "via": source}
    if report.kind == "soft":
        if reader.status == "unsubscribed":
            return
        score = _soft_score(session, reader.id, values["received_at"])
        if score is None:
            return
        details |= score
    method = "complaint" if report.kind == "complaint" else "bounce"
    if _suppress(session, reader, method, delivery.edition_id if delivery else None, details):
        result.suppressed += 1


def suppress_reader(session: Session, reader: Reader, method: str, edition_id: int | None,
                    details: dict) -> bool:
    """Unsubscribe, suppress and record it in the ledger (also for a 5.1.x at RCPT)."""
    return _suppress(session, reader, method, edition_id, details)


def _suppress(session: Session, reader: Reader, method: str, edition_id: int | None,
              details: dict) -> bool:
    """Unsubscribe and suppress the reader; False when both were so already."""
    new_suppression = not consent.is_suppressed(session, reader.email)
    if new_suppression:
        consent.suppress(session, reader.email, method)
    newly_unsubscribed = reader.status != "unsubscribed"
    if newly_unsubscribed:
        with follows.tracked(session, [reader.id], method):
            reader.status = "unsubscribed"
            reader.unsubscribed_at = utcnow()
    if not (new_suppression or newly_unsubscribed):
        return False
    consent.record(session, reader.id, reader.email, "withdrawn", source="email", method=method,
                   edition_id=edition_id, details=details)
    # Not the diagnostic: a receiver's text can quote the address.
    events.record(session, events.READER_BOUNCED, reader_id=reader.id, kind=method,
                  edition_id=edition_id)
    session.execute(
        update(Delivery)
        .where(Delivery.reader_id == reader.id, Delivery.status.in_(UNSENT))
        .values(status=DeliveryStatus.SUPPRESSED, last_error=f"reader suppressed ({method})")
    )
    return True


def _soft_score(session: Session, reader_id: int, at: datetime) -> dict | None:
    """The soft bounces that reach the limit around ``at``, or None while they do not."""
    settings = get_settings()
    window = timedelta(days=settings.soft_bounce_days)
    # Any window containing ``at``: reports read late or out of order score as they
    # would have when they came.
    times = sorted(session.scalars(
        select(BounceEvent.received_at).where(
            BounceEvent.reader_id == reader_id, BounceEvent.kind == "soft",
            BounceEvent.received_at >= at - window, BounceEvent.received_at <= at + window)
    ).all())
    limit = settings.soft_bounce_limit
    min_days = min(SOFT_MIN_DAYS, limit)
    for start in times:
        if not start <= at <= start + window:
            continue
        inside = [t for t in times if start <= t <= start + window]
        days = {t.date() for t in inside}
        if len(inside) >= limit and len(days) >= min_days:
            return {"soft_bounces": len(inside), "days": len(days),
                    "window_days": settings.soft_bounce_days}
    return None


@dataclass
class _Match:
    """The message of ours a report is about, or why it is about none."""

    reader: Reader | None = None
    delivery: Delivery | None = None  # None for a notice (confirmation, welcome)
    about: str | None = None  # what names the message when the report has no Message-ID
    unmatched: str | None = None  # why the report was ignored


def _match(session: Session, report: Report) -> _Match:
    """The delivery or notice the report names by VERP token, else by Message-ID."""
    envelopes = [e for e in map(verp.read, report.envelope) if e is not None]
    for envelope in envelopes:
        match = _by_envelope(session, envelope)
        if match is None:
            continue
        if not _about(report, match.reader):
            return _Match(unmatched=_ANOTHER_RECIPIENT)
        return match
    if report.original_message_id:
        delivery = session.scalar(select(Delivery).where(
            Delivery.message_id == report.original_message_id))
        reader = session.get(Reader, delivery.reader_id) \
            if delivery is not None and delivery.reader_id is not None else None
        if reader is not None and _about(report, reader) and (
                report.recipient is not None or _unsubscribe_names(report, reader)):
            return _Match(reader, delivery)
        if delivery is not None:
            return _Match(unmatched="returns the Message-ID of a delivery to another address")
    if envelopes:
        return _Match(unmatched="bounce address token not valid for any message we sent")
    if report.original_message_id:
        return _Match(unmatched="returns a Message-ID we never sent")
    return _Match(unmatched="names no message we sent (only an address)")


_ANOTHER_RECIPIENT = "the failed recipient is not the address we sent to (alias member, forward)"


def _about(report: Report, reader: Reader | None) -> bool:
    # The address that failed or complained, when the report names one, must be the one we
    # sent to: a member of an alias (or a forward) failing says nothing about the reader.
    return reader is not None and (report.recipient is None
                                   or _normalise(report.recipient) == reader.email)


def _by_envelope(session: Session, envelope: verp.Envelope) -> _Match | None:
    delivery = None
    if envelope.kind == "d":
        delivery = session.get(Delivery, envelope.ident)
        reader_id = delivery.reader_id if delivery is not None else None
    else:
        reader_id = envelope.ident
    reader = session.get(Reader, reader_id) if reader_id is not None else None
    if reader is None or not verp.verify(envelope, reader.email):
        return None
    return _Match(reader, delivery, about=f"verp:{envelope.kind}{envelope.ident}")


def _unsubscribe_names(report: Report, reader: Reader) -> bool:
    """Whether the returned headers carry our signed unsubscribe link for ``reader``
    (a complaint whose provider removed the address keeps it)."""
    for url in report.unsubscribe_urls:
        _, _, token = url.rpartition("/unsubscribe/")
        try:
            data, _ = tokens.read("unsubscribe", token)
        except tokens.InvalidToken:
            continue
        if data["r"] == reader.id and data["h"] == tokens.email_tag(reader.email):
            return True
    return False


def _dedupe_key(report: Report, match: _Match) -> str:
    about = report.original_message_id or match.about or report.report_id
    # An ignored report never shares a key with a matched one: a forged report sent first
    # must not make the genuine one a "duplicate".
    prefix = f"unmatched|{report.report_id}|" if match.unmatched else ""
    return hashlib.sha256(
        f"{prefix}{about}|{report.recipient or ''}|{report.kind}".encode()).hexdigest()


def _normalise(address: str) -> str:
    # Bounces quote addresses our form never would have accepted; compare them anyway.
    try:
        return normalise_email(address)
    except SubscriptionError:
        return address.strip().lower()


def _redacted(text: str) -> str:
    # bounce_events outlive an erasure (like suppressions, they keep only hashes), so the
    # addresses a diagnostic quotes keep only their domain.
    return _ADDRESS.sub(lambda m: f"…@{m.group(1)}", text)


def _plausible(when: datetime | None) -> datetime:
    now = utcnow()
    # A missing Date, or one in the future (a skewed clock), counts as now.
    return when.astimezone(UTC) if when is not None and when <= now + timedelta(hours=1) else now
