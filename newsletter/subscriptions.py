"""A reader's life: subscribe, confirm (double opt-in), unsubscribe."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter import consent, events, tokens
from newsletter.config import get_settings
from newsletter.models import Delivery, Reader, Tag, utcnow

FREQUENCIES = ("immediate", "daily", "weekly")
# A pending reader gets at most one confirmation email a day, so the form cannot be used
# to bomb somebody else's inbox.
CONFIRMATION_INTERVAL = timedelta(hours=24)

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z]{2,63}$")


class SubscriptionError(ValueError):
    """Bad input to a subscription; ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def normalise_email(raw: str) -> str:
    """The canonical form of an address; raises SubscriptionError if it is not one."""
    email = (raw or "").strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        raise SubscriptionError("Please enter a valid email address.", "email")
    return email


def resolve_topics(session: Session, slugs: Iterable[str]) -> list[Tag]:
    """The tags named by ``slugs``; raises SubscriptionError for none or unknown ones."""
    wanted = sorted({s.strip().lower() for s in slugs if s and s.strip()})
    if not wanted:
        raise SubscriptionError("Choose at least one topic.", "topics")
    found = session.scalars(select(Tag).where(Tag.slug.in_(wanted))).all()
    unknown = set(wanted) - {t.slug for t in found}
    if unknown:
        raise SubscriptionError(f"Unknown topic: {', '.join(sorted(unknown))}.", "topics")
    return sorted(found, key=lambda t: t.name)


def _check_frequency(frequency: str) -> str:
    if frequency not in FREQUENCIES:
        raise SubscriptionError("Choose immediate, daily or weekly.", "frequency")
    return frequency


def form_errors(session: Session, email: str, topics: Iterable[str], frequency: str,
                consent_given: bool) -> dict[str, str]:
    """Every problem with a sign-up at once, by form field (a form shows them together)."""
    errors: dict[str, str] = {}
    checks = [(normalise_email, (email,)), (resolve_topics, (session, topics)),
              (_check_frequency, (frequency,))]
    for check, args in checks:
        try:
            check(*args)
        except SubscriptionError as exc:
            errors[exc.field or "form"] = str(exc)
    if not consent_given:
        errors["consent"] = "Please tick the box to agree to receive the newsletter."
    return errors


def subscribe(
    session: Session,
    email: str,
    topics: Iterable[str],
    frequency: str,
    *,
    consent_given: bool,
    source: str = "form",
    ip: str | None = None,
    user_agent: str | None = None,
) -> Reader:
    """Ask for a subscription; nothing is active until the reader confirms by email.

    The caller answers the same way whatever state the address was in (no enumeration);
    an already active reader is left as is — changes go through their preferences link.
    Bad input raises SubscriptionError before anything is written (the form relies on it).
    """
    email = normalise_email(email)
    tags = resolve_topics(session, topics)
    _check_frequency(frequency)
    if not consent_given:
        raise SubscriptionError("Please tick the box to agree to receive the newsletter.",
                                "consent")
    reader = session.scalar(select(Reader).where(Reader.email == email))
    if reader is not None and reader.status == "active":
        return reader
    if reader is None:
        reader = Reader(email=email, status="pending", source=source)
        session.add(reader)
    reader.status = "pending"
    reader.frequency = frequency
    reader.topics = tags
    session.flush()
    consent.record(session, reader, "requested", source=source, ip=ip, user_agent=user_agent,
                   details={"topics": [t.slug for t in tags], "frequency": frequency})
    events.record(session, events.READER_SUBSCRIBED, reader_id=reader.id)
    return reader


def confirmation_due(reader: Reader) -> bool:
    """Whether a confirmation email may go to this reader now."""
    if reader.status != "pending":
        return False
    sent = reader.confirmation_sent_at
    return sent is None or utcnow() - sent >= CONFIRMATION_INTERVAL


def confirm(session: Session, token: str, *, ip: str | None = None,
            user_agent: str | None = None) -> Reader:
    """Activate the reader a confirm link names; idempotent for an active reader."""
    max_age = get_settings().confirm_max_age_days * 86400
    data, signed_at = tokens.read("confirm", token, max_age_s=max_age)
    reader = _reader_for(session, data)
    if reader.status == "active":
        return reader
    # A link from before an unsubscribe must not silently resubscribe the reader.
    if reader.unsubscribed_at is not None and reader.unsubscribed_at > signed_at:
        raise tokens.InvalidToken("this link was replaced by a later choice")
    reader.status = "active"
    reader.confirmed_at = utcnow()
    consent.record(session, reader, "confirmed", source="email", method="link", ip=ip,
                   user_agent=user_agent,
                   details={"topics": [t.slug for t in reader.topics],
                            "frequency": reader.frequency})
    # Confirming proves the mailbox works and renews consent: an old erasure, bounce or
    # complaint no longer applies (an operator's own block does).
    consent.unsuppress(session, reader.email, reasons=("erased", "bounce", "complaint"))
    events.record(session, events.READER_CONFIRMED, reader_id=reader.id)
    return reader


def resend_confirmation(session: Session, token: str) -> Reader | None:
    """Ask for a new confirmation email from a genuine but expired confirm link."""
    data, _ = tokens.read("confirm", token)  # signature checked, age not
    reader = _reader_for(session, data)
    if reader.status != "pending":
        return None
    events.record(session, events.READER_SUBSCRIBED, reader_id=reader.id)
    return reader


def reader_from_token(session: Session, purpose: str, token: str) -> Reader:
    """The reader a preferences/unsubscribe/view link names; raises tokens.InvalidToken."""
    data, _ = tokens.read(purpose, token)
    return _reader_for(session, data)


PAUSES = {"": None, "1w": timedelta(weeks=1), "4w": timedelta(weeks=4),
          "12w": timedelta(weeks=12)}


def change_preferences(
    session: Session,
    reader: Reader,
    *,
    topics: Iterable[str],
    frequency: str,
    pause: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
) -> dict:
    """Apply the preferences form; returns what changed (empty when nothing did)."""
    tags = resolve_topics(session, topics)
    _check_frequency(frequency)
    if pause not in PAUSES and pause != "resume":
        raise SubscriptionError("Choose how long to pause.", "pause")
    changes: dict = {}
    before = sorted(t.slug for t in reader.topics)
    after = sorted(t.slug for t in tags)
    if before != after:
        changes["topics"] = [before, after]
        reader.topics = tags
    if reader.frequency != frequency:
        changes["frequency"] = [reader.frequency, frequency]
        reader.frequency = frequency
    if pause == "resume" and reader.paused_until is not None:
        changes["paused_until"] = [reader.paused_until.isoformat(), None]
        reader.paused_until = None
    elif PAUSES.get(pause):
        until = utcnow() + PAUSES[pause]
        changes["paused_until"] = [
            reader.paused_until.isoformat() if reader.paused_until else None, until.isoformat()]
        reader.paused_until = until
    if changes:
        consent.record(session, reader, "changed", source="web", method="preferences", ip=ip,
                       user_agent=user_agent, details=changes)
    return changes


def resubscribe(session: Session, token: str, *, consent_given: bool, ip: str | None = None,
                user_agent: str | None = None) -> Reader:
    """Undo an unsubscribe from the reader's own link (it proves the mailbox is theirs)."""
    reader = reader_from_token(session, "unsubscribe", token)
    if not consent_given:
        raise SubscriptionError("Please tick the box to agree to receive the newsletter.",
                                "consent")
    if reader.status == "active":
        return reader
    reader.status = "active"
    reader.unsubscribed_at = None
    reader.confirmed_at = utcnow()
    consent.record(session, reader, "confirmed", source="web", method="resubscribe", ip=ip,
                   user_agent=user_agent,
                   details={"topics": [t.slug for t in reader.topics],
                            "frequency": reader.frequency})
    return reader


def unsubscribe(session: Session, token: str, *, method: str, ip: str | None = None,
                user_agent: str | None = None, reason: str | None = None) -> Reader:
    """Withdraw consent at once (idempotent) and stop anything still queued for the reader."""
    data, _signed_at = tokens.read("unsubscribe", token)
    reader = _reader_for(session, data)
    if reader.status == "unsubscribed":
        return reader
    reader.status = "unsubscribed"
    reader.unsubscribed_at = utcnow()
    edition_id = data.get("e") if isinstance(data.get("e"), int) else None
    consent.record(session, reader, "withdrawn", source="email", method=method, ip=ip,
                   user_agent=user_agent, edition_id=edition_id,
                   details={"reason": reason[:500]} if reason else {})
    session.execute(
        update(Delivery)
        .where(Delivery.reader_id == reader.id, Delivery.status.in_(("queued", "retry")))
        .values(status="suppressed", last_error="reader unsubscribed")
    )
    return reader


def _reader_for(session: Session, data: dict) -> Reader:
    reader = session.get(Reader, data["r"])
    if reader is None or tokens.email_tag(reader.email) != data["h"]:
        raise tokens.InvalidToken("this link is not valid")
    return reader
