"""A reader's rights over their data: export everything we hold, or erase it.

The links in every email (preferences, unsubscribe) are long-lived and get forwarded, so
they only change topics or unsubscribe. Reading or erasing the data, or subscribing again,
takes a link we email to the address on request, which works for an hour by default
(``data_link_max_age_minutes``): holding the mailbox, not an old email, is the proof.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Text, and_, case, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter import events, follows, i18n, tokens
from newsletter.config import get_settings
from newsletter.errors import ReaderNotFound  # noqa: F401 - re-exported
from newsletter.models import (
    Article,
    BounceEvent,
    ConsentEvent,
    Delivery,
    Edition,
    EditionDigest,
    OutboxEvent,
    Reader,
    ReceivedDigest,
    utcnow,
)
from newsletter.readers import consent, subscriptions
from newsletter.readers.subscriptions import SubscriptionError, normalise_email
from newsletter.states import UNSENT, DeliveryStatus

# At most one link to their data a reader gets in this time, however often someone holding
# one of their emails asks: enough to ask again if one went astray, too little to flood.
DATA_LINK_INTERVAL = timedelta(minutes=5)


def _reader(session: Session, email: str) -> Reader:
    try:
        email = normalise_email(email)
    except SubscriptionError:  # no reader can have an address that is not one
        raise ReaderNotFound("no reader with that address") from None
    reader = session.scalar(select(Reader).where(Reader.email == email))
    if reader is None:
        raise ReaderNotFound("no reader with that address")
    return reader


def data_link_due(reader: Reader) -> bool:
    """Whether a link to their data may be emailed to the reader now."""
    sent = reader.data_link_sent_at
    return sent is None or utcnow() - sent >= DATA_LINK_INTERVAL


def claim_data_link(session: Session, reader_id: int) -> bool:
    """Stamp the reader's data link as sent now, if one is due; whether this caller did.

    One conditional UPDATE, so two workers handed two requests of one reader at once send
    one email between them, not one each.
    """
    now = utcnow()
    claimed = session.execute(update(Reader).where(
        Reader.id == reader_id, or_(Reader.data_link_sent_at.is_(None),
                                    Reader.data_link_sent_at <= now - DATA_LINK_INTERVAL))
        .values(data_link_sent_at=now).execution_options(synchronize_session=False))
    return claimed.rowcount == 1


def request_data_link(session: Session, reader: Reader) -> None:
    """Have the worker email the reader a short-lived link to their data (if one is due)."""
    if data_link_due(reader):
        events.record(session, events.DATA_LINK_REQUESTED, reader_id=reader.id)


def data_link_lifetime(locale: str | None = None) -> str:
    """How long a data link works, as the page and the email say it ("1 hour", "ساعة")."""
    return i18n.format_minutes(get_settings().data_link_max_age_minutes,
                               i18n.locale_of(locale) if locale else "en")


def data_link_url(reader: Reader) -> str:
    return f"{get_settings().base_url}/my-data/{tokens.make('data', reader.id, reader.email)}"


def reader_from_data_link(session: Session, token: str) -> Reader:
    """The reader a data link names; raises tokens.ExpiredToken past its lifetime."""
    tokens.read("data", token, max_age_s=get_settings().data_link_max_age_minutes * 60)
    return subscriptions.reader_from_token(session, "data", token)


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
        "consent_text": {"version": get_settings().consent_text_version,
                         "text": get_settings().consent_text},
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
            # None: never told us; digests follow the site's zone.
            "timezone": reader.timezone,
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
                consent.matches(BounceEvent.email_hash, reader.email)))
                .order_by(BounceEvent.id))
        ],
        "deliveries": [
            {"edition_id": d.edition_id, "kind": kind, "frequency": frequency,
             "status": d.status, "message_id": d.message_id, "created_at": _iso(d.created_at),
             "sent_at": _iso(d.sent_at), "articles": carried.get(d.id, [])}
            for d, frequency, kind in deliveries
        ],
        "received_before_pruning": _received(session, reader),
        "exported_at": _iso(utcnow()),
    }


def _received(session: Session, reader: Reader) -> list[dict[str, Any]]:
    """What the reader got from editions whose deliveries were pruned (retention): the
    edition, when it was sent, and the articles it carried."""
    rows = session.execute(
        select(ReceivedDigest.edition_id, ReceivedDigest.received_at, EditionDigest.items)
        .join(EditionDigest, and_(EditionDigest.edition_id == ReceivedDigest.edition_id,
                                  EditionDigest.content_key == ReceivedDigest.content_key))
        .where(ReceivedDigest.reader_id == reader.id).order_by(ReceivedDigest.edition_id)
    ).all()
    urls = dict(session.execute(select(Article.id, Article.url).where(Article.id.in_(
        {i[1] for _, _, items in rows for i in items}))).all()) if rows else {}
    return [{"edition_id": edition_id, "sent_at": _iso(at),
             "articles": [urls[i[1]] for i in items if i[1] in urls]}
            for edition_id, at, items in rows]


def erase(session: Session, email: str) -> int:
    """Delete the reader and their history, keeping only a keyed-hash suppression entry;
    returns the id the reader had (the audit log names them by it).

    Delivery rows stay for the edition's counts but lose the link to the reader and any
    error text (an SMTP reply quotes the address); the ledger entries and bounce reports go
    too (they hold the IP, user agent, diagnostics), and so do outbox events naming the
    address (an editor's test send to it).
    """
    reader = _reader(session, email)
    email = reader.email
    session.execute(
        update(Delivery).where(Delivery.reader_id == reader.id, or_(
            Delivery.status.in_(UNSENT), Delivery.last_error.is_not(None)))
        .values(status=case((Delivery.status.in_(UNSENT), DeliveryStatus.SUPPRESSED),
                            else_=Delivery.status),
                last_error="reader erased"))
    session.execute(update(Delivery).where(Delivery.reader_id == reader.id)
                    .values(reader_id=None))
    session.execute(delete(ConsentEvent).where(or_(
        ConsentEvent.reader_id == reader.id, consent.matches(ConsentEvent.email_hash, email))))
    session.execute(delete(BounceEvent).where(or_(
        BounceEvent.reader_id == reader.id, consent.matches(BounceEvent.email_hash, email),
        _mentions(BounceEvent.diagnostic, email))))
    session.execute(delete(OutboxEvent).where(
        _mentions(cast(OutboxEvent.payload, Text), email)))
    consent.suppress(session, email, "erased")
    reader_id = reader.id
    follows.record(session, follows.following(session, [reader_id]), set(), "erase")
    follows.forget(session, reader_id)
    session.delete(reader)
    session.flush()
    return reader_id


def _mentions(column: Any, email: str):
    """``column`` contains the address, as typed in any case or as JSON escapes it."""
    forms = {email.lower(), json.dumps(email.lower())[1:-1]}
    return or_(*(func.lower(column).like(f"%{_like_escaped(f)}%", escape="\\") for f in forms))


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
