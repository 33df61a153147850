"""A reader's rights over their data: export everything we hold, or erase it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from newsletter import consent
from newsletter.config import CONSENT_TEXT, CONSENT_TEXT_VERSION
from newsletter.models import (
    Article,
    BounceEvent,
    ConsentEvent,
    Delivery,
    Edition,
    EditionDigest,
    Reader,
    utcnow,
)
from newsletter.subscriptions import normalise_email


class ReaderNotFound(LookupError):
    pass


def _reader(session: Session, email: str) -> Reader:
    try:
        email = normalise_email(email)
    except ValueError:
        raise ReaderNotFound("no reader with that address") from None
    reader = session.scalar(select(Reader).where(Reader.email == email))
    if reader is None:
        raise ReaderNotFound("no reader with that address")
    return reader


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def consent_receipt(session: Session, reader: Reader) -> dict[str, Any]:
    """The consent history of one reader, as the receipt they can download."""
    entries = session.scalars(
        select(ConsentEvent).where(ConsentEvent.reader_id == reader.id)
        .order_by(ConsentEvent.created_at, ConsentEvent.id)
    ).all()
    return {
        "email": reader.email,
        "consent_text": {"version": CONSENT_TEXT_VERSION, "text": CONSENT_TEXT},
        "events": [
            {"at": _iso(e.created_at), "action": e.action, "source": e.source,
             "method": e.method, "consent_text_version": e.consent_text_version,
             "consent_text_hash": e.consent_text_hash, "ip": e.ip, "user_agent": e.user_agent,
             "edition_id": e.edition_id, "details": e.details}
            for e in entries
        ],
    }


def export(session: Session, email: str) -> dict[str, Any]:
    """Everything held about the reader with this address (GDPR art. 15)."""
    reader = _reader(session, email)
    deliveries = session.execute(
        select(Delivery, Edition.frequency, Edition.kind)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.reader_id == reader.id).order_by(Delivery.id)
    ).all()
    contents = {(e, k): stored for e, k, stored in session.execute(
        select(EditionDigest.edition_id, EditionDigest.content_key, EditionDigest.items)
        .join(Delivery, and_(Delivery.edition_id == EditionDigest.edition_id,
                             Delivery.content_key == EditionDigest.content_key))
        .where(Delivery.reader_id == reader.id))}
    urls = dict(session.execute(select(Article.id, Article.url).where(Article.id.in_(
        {i[1] for stored in contents.values() for i in stored}))).all()) if contents else {}
    carried = {d.id: [urls[i[1]] for i in contents.get((d.edition_id, d.content_key), ())
                      if i[1] in urls]
               for d, _, _ in deliveries}
    return {
        "reader": {
            "email": reader.email, "status": reader.status, "frequency": reader.frequency,
            "topics": [t.slug for t in reader.topics], "source": reader.source,
            "created_at": _iso(reader.created_at), "confirmed_at": _iso(reader.confirmed_at),
            "unsubscribed_at": _iso(reader.unsubscribed_at),
            "paused_until": _iso(reader.paused_until),
            "confirmation_sent_at": _iso(reader.confirmation_sent_at),
            "last_digest_at": _iso(reader.last_digest_at),
        },
        "consent": consent_receipt(session, reader)["events"],
        "bounces": [
            {"kind": b.kind, "status": b.status, "diagnostic": b.diagnostic,
             "message_id": b.message_id, "received_at": _iso(b.received_at)}
            for b in session.scalars(select(BounceEvent).where(or_(
                BounceEvent.reader_id == reader.id,
                BounceEvent.email_hash == consent.email_hash(reader.email)))
                .order_by(BounceEvent.id))
        ],
        "deliveries": [
            {"edition_id": d.edition_id, "kind": kind, "frequency": frequency,
             "status": d.status, "message_id": d.message_id, "created_at": _iso(d.created_at),
             "sent_at": _iso(d.sent_at), "articles": carried.get(d.id, [])}
            for d, frequency, kind in deliveries
        ],
        "exported_at": _iso(utcnow()),
    }


def erase(session: Session, email: str) -> None:
    """Delete the reader and their history, keeping only a hashed suppression entry.

    Delivery rows stay for the edition's counts but lose the link to the reader; the
    ledger entries and bounce reports go too (they hold the IP, user agent, diagnostics).
    """
    reader = _reader(session, email)
    session.execute(
        update(Delivery).where(Delivery.reader_id == reader.id, Delivery.status.in_(
            ("queued", "retry"))).values(status="suppressed", last_error="reader erased"))
    session.execute(update(Delivery).where(Delivery.reader_id == reader.id)
                    .values(reader_id=None))
    session.execute(delete(ConsentEvent).where(or_(
        ConsentEvent.reader_id == reader.id,
        ConsentEvent.email_hash == consent.email_hash(reader.email))))
    session.execute(delete(BounceEvent).where(or_(
        BounceEvent.reader_id == reader.id,
        BounceEvent.email_hash == consent.email_hash(reader.email))))
    consent.suppress(session, reader.email, "erased")
    session.delete(reader)
    session.flush()
