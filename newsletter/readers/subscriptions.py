"""A reader's life: subscribe, confirm (double opt-in), unsubscribe."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from datetime import timedelta
from functools import cache

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from newsletter import events, follows, i18n, langtags, sql, tokens, zones
from newsletter.config import N_, get_settings
from newsletter.errors import SubscriptionError  # noqa: F401 - re-exported
from newsletter.models import (
    ConsentEvent,
    Delivery,
    FormNonce,
    PendingChoice,
    Reader,
    ReaderTopic,
    Suppression,
    Topic,
    utcnow,
)
from newsletter.readers import consent
from newsletter.states import UNSENT, DeliveryStatus

FREQUENCIES = ("immediate", "daily", "weekly")
# A pending reader gets at most one confirmation email a day, so the form cannot be used
# to bomb somebody else's inbox.
CONFIRMATION_INTERVAL = timedelta(hours=24)

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z0-9-]{2,63}$")
LOCAL_PART_NEEDS_UTF8 = N_("We cannot send email to an address with letters outside A–Z "
                          "before the @ yet. Please use another address.")


def normalise_email(raw: str) -> str:
    """The canonical form of an address; raises SubscriptionError if it is not one.

    An international domain is kept in its ASCII (IDNA) form, which every relay takes.
    For finding a reader (exports, erasure, bounces); what may sign up is sendable_email's.
    """
    email = (raw or "").strip().lower()
    local, at, domain = email.rpartition("@")
    if at and domain and not domain.isascii():
        email = f"{local}@{_ascii_domain(domain)}"
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        raise SubscriptionError(N_("Please enter a valid email address."), "email")
    return email


def sendable_email(raw: str) -> str:
    """normalise_email, refusing an address no message of ours could reach.

    A non-ASCII local part goes only through a relay that offers SMTPUTF8
    (``NEWSLETTER_SMTP_UTF8``); without one, the confirmation could never leave.
    """
    email = normalise_email(raw)
    if not email.isascii() and not get_settings().smtp_utf8:
        raise SubscriptionError(LOCAL_PART_NEEDS_UTF8, "email")
    return email


def _ascii_domain(domain: str) -> str:
    import idna

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise SubscriptionError(N_("Please enter a valid email address."), "email") from None


def _wanted(slugs: Iterable[str]) -> list[str]:
    wanted = sorted({s.strip().lower() for s in slugs if s and s.strip()})
    if not wanted:
        raise SubscriptionError(N_("Choose at least one topic."), "topics")
    return wanted


def _check_known(wanted: list[str], found: Iterable[str]) -> None:
    unknown = set(wanted) - set(found)
    if unknown:
        raise SubscriptionError(N_("Unknown topic: %(topics)s."), "topics",
                                topics=", ".join(sorted(unknown)))


def resolve_topics(session: Session, slugs: Iterable[str]) -> list[Topic]:
    """The live topics named by ``slugs``; raises SubscriptionError for none, unknown or
    retired ones."""
    wanted = _wanted(slugs)
    found = session.scalars(select(Topic).where(Topic.slug.in_(wanted),
                                                Topic.retired_at.is_(None))).all()
    _check_known(wanted, (t.slug for t in found))
    return sorted(found, key=lambda t: t.name)


def _topic_ids(session: Session, slugs: Iterable[str]) -> tuple[list[str], list[int]]:
    """``resolve_topics`` without ORM objects: the slugs and the ids of their topics."""
    wanted = _wanted(slugs)
    found = session.execute(_find_topics(sql.one_of_named(session, _TOPICS.c.slug, "slugs")),
                            {"slugs": wanted}).all()
    _check_known(wanted, (slug for _id, slug in found))
    return wanted, [topic_id for topic_id, _slug in found]


def _check_frequency(frequency: str) -> str:
    if frequency not in FREQUENCIES:
        raise SubscriptionError(N_("Choose immediate, daily or weekly."), "frequency")
    return frequency


def reader_message(exc: SubscriptionError) -> i18n.Later:
    """The error as a reader page shows it, in the reader's language."""
    return i18n.later(exc.message_id, **exc.variables)


def check_languages(languages: Iterable[str] | None) -> str | None:
    """The languages a reader reads as Reader.languages stores them ("ar,en": the site's
    languages, as primary subtags, in the order given); None when none were given."""
    chosen = [lang for lang in (languages or ()) if lang and lang.strip()]
    if not chosen:
        return None
    try:
        return ",".join(langtags.among(chosen, get_settings().languages))
    except ValueError:
        raise SubscriptionError(N_("Choose the languages you read among those offered."),
                                "languages") from None


def form_errors(session: Session, email: str, topics: Iterable[str], frequency: str,
                consent_given: bool,
                languages: Iterable[str] | None = None) -> dict[str, i18n.Later]:
    """Every problem with a sign-up at once, by form field (a form shows them together),
    each translated where it is shown."""
    errors: dict[str, i18n.Later] = {}
    checks = [(sendable_email, (email,)), (resolve_topics, (session, topics)),
              (_check_frequency, (frequency,)), (check_languages, (languages,))]
    for check, args in checks:
        try:
            check(*args)
        except SubscriptionError as exc:
            errors[exc.field or "form"] = reader_message(exc)
    if not consent_given:
        errors["consent"] = i18n.later(
            N_("Please tick the box to agree to receive the newsletter."))
    return errors


# subscribe()'s statements, built once (per dialect) and run with parameters: building a
# Core statement costs more CPU than PostgreSQL spends running it.
_READERS, _LINKS, _TOPICS = Reader.__table__, ReaderTopic.__table__, Topic.__table__
_CHOICES = PendingChoice.__table__


@cache
def _find_topics(slug_among):
    # On PostgreSQL one array parameter: an expanding IN is rewritten for every call.
    return select(_TOPICS.c.id, _TOPICS.c.slug).where(_TOPICS.c.retired_at.is_(None),
                                                        slug_among)


@cache
def _upsert_reader(insert):
    return insert.on_conflict_do_update(
        index_elements=[_READERS.c.email],
        # A form in another language than last time: the confirmation is written in it.
        set_={"status": insert.excluded.status,
              "locale": func.coalesce(insert.excluded.locale, _READERS.c.locale)},
        where=_READERS.c.status != "active",
    ).returning(_READERS.c.id, _READERS.c.created_at)


@cache
def _upsert_choice(insert):
    return insert.on_conflict_do_update(
        index_elements=[_CHOICES.c.reader_id],
        set_={"topics": insert.excluded.topics, "frequency": insert.excluded.frequency,
              "languages": insert.excluded.languages,
              "created_at": insert.excluded.created_at})


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
    timezone: str | None = None,
    locale: str | None = None,
    languages: Iterable[str] | None = None,
) -> int:
    """Ask for a subscription; nothing is active until the reader confirms by email.

    ``languages`` are those the reader reads (their digests carry stories in these only);
    none given: the language the form was shown in (``locale``), else the site's.

    ``locale`` is the language the form was shown in: the reader's pages and emails (the
    confirmation first) are shown in it (not for an active reader: that goes through their
    preferences). None keeps what the reader had (the site's LANGUAGE for a new one).

    Returns the reader's id. The caller answers the same way whatever state the address was
    in (no enumeration); an already active reader is left as is — changes go through their
    preferences link. An address we know (pending, unsubscribed) keeps its topics and
    frequency: the new choice waits beside it (PendingChoice) until the mailbox confirms.
    ``timezone`` (the browser's, from the form's hidden field) is kept for a new reader
    only if zoneinfo knows it, else the site's; a known reader keeps theirs (a stranger may
    type their address; the preference centre changes it). Bad input raises
    SubscriptionError before anything is written (the form relies on it).

    Written with Core statements, not the unit of work: this is the form a campaign or a
    breaking story sends thousands of readers to at once, and the ORM's flush of a reader,
    their topics, the consent entry and the outbox event cost more CPU than the rest of
    the request (bench/RESULTS.md, subscribe).
    """
    email = sendable_email(email)
    in_one = sql.writes_in_one_statement(session)
    if not in_one:
        slugs, topic_ids = _topic_ids(session, topics)
    _check_frequency(frequency)
    shown = i18n.usable(locale or "")
    reads = check_languages(languages) or shown or get_settings().language
    if shown and f",{shown}," in f",{reads},":  # the form's language first: their own
        reads = ",".join([shown, *(r for r in reads.split(",") if r != shown)])
    if not consent_given:
        raise SubscriptionError(N_("Please tick the box to agree to receive the newsletter."),
                                "consent")
    now = utcnow()
    timezone = zones.zone_or_none(timezone)
    if in_one:
        return _subscribe_in_one(session, email, topics, frequency, source=source, ip=ip,
                                 user_agent=user_agent, now=now, timezone=timezone,
                                 locale=locale, languages=reads)
    # An address seen before becomes pending again, its choice kept aside until confirmed,
    # unless it is active: then no row comes back and nothing is written.
    row = session.execute(_upsert_reader(sql.upsert(session, _READERS)), {
        "email": email, "status": "pending", "frequency": frequency, "source": source,
        "created_at": now, "timezone": timezone, "locale": locale, "languages": reads}).first()
    if row is None:
        return session.scalar(select(Reader.id).where(Reader.email == email))
    reader_id, created_at = row
    if created_at != now:  # an existing row (a new one carries our own timestamp)
        session.execute(_upsert_choice(sql.upsert(session, _CHOICES)), {
            "reader_id": reader_id, "topics": slugs, "frequency": frequency,
            "languages": reads, "created_at": now})
    else:
        session.execute(sql.insert_ignoring_duplicates(session, _LINKS),
                        [{"reader_id": reader_id, "topic_id": t} for t in topic_ids])
    consent.record(session, reader_id, email, "requested", source=source, ip=ip,
                   user_agent=user_agent,
                   details={"topics": slugs, "frequency": frequency})
    events.record(session, events.READER_SUBSCRIBED, reader_id=reader_id)
    return reader_id


def _subscribe_in_one(session: Session, email: str, topics: Iterable[str], frequency: str, *,
                      source: str, ip: str | None, user_agent: str | None, now,
                      timezone: str | None = None, locale: str | None = None,
                      languages: str | None = None) -> int:
    """subscribe() on PostgreSQL: the topic lookup and every write in one statement.

    Why: the form is the path a breaking story sends thousands of readers to at once, and
    each statement cost a round trip and its Python stack (SQLAlchemy, psycopg) in the web
    process: six of them were most of a subscribe's CPU. The writes happen only if every
    topic is known (nothing is written otherwise), and not at all for an active reader.
    """
    slugs = _wanted(topics)
    row = session.execute(_SUBSCRIBE, {
        "slugs": slugs, "email": email, "frequency": frequency, "source": source,
        "timezone": timezone, "created_at": now, "locale": locale, "languages": languages,
        "email_hash": consent.email_hash(email),
        "text_version": get_settings().consent_text_version, "text_hash": get_settings().consent_text_hash,
        "ip": ip, "user_agent": (user_agent or "")[:512] or None,
        "details": {"topics": slugs, "frequency": frequency}, "choice": slugs,
        "event": events.READER_SUBSCRIBED}).one()
    found, reader_id, event_id = row
    _check_known(slugs, found or ())
    if reader_id is None:  # already active: left as is
        return session.scalar(select(Reader.id).where(Reader.email == email))
    events.recorded(session, event_id, events.READER_SUBSCRIBED, {"reader_id": reader_id})
    return reader_id


# A new reader (created_at is ours) gets the chosen topics; a known one keeps theirs and
# the choice waits in pending_choices until confirmed (see subscribe()).
_SUBSCRIBE = text("""
WITH chosen AS (
  SELECT id, slug FROM topics WHERE slug = ANY(:slugs) AND retired_at IS NULL
), known AS (
  SELECT count(*) = cardinality(CAST(:slugs AS VARCHAR[])) AS ok FROM chosen
), reader AS (
  INSERT INTO readers (email, status, frequency, source, timezone, created_at, locale, languages)
  SELECT :email, 'pending', :frequency, :source, :timezone, :created_at, :locale, :languages
  FROM known WHERE ok
  ON CONFLICT (email) DO UPDATE SET status = excluded.status,
    locale = COALESCE(excluded.locale, readers.locale)
  WHERE readers.status <> 'active'
  RETURNING id, created_at = :created_at AS is_new
), linked AS (
  INSERT INTO reader_topics (reader_id, topic_id)
  SELECT reader.id, chosen.id FROM reader, chosen WHERE reader.is_new ON CONFLICT DO NOTHING
), choice AS (
  INSERT INTO pending_choices (reader_id, topics, frequency, languages, created_at)
  SELECT id, :choice, :frequency, :languages, :created_at FROM reader WHERE NOT reader.is_new
  ON CONFLICT (reader_id) DO UPDATE SET topics = excluded.topics,
    frequency = excluded.frequency, languages = excluded.languages,
    created_at = excluded.created_at
), consented AS (
  INSERT INTO consent_events (reader_id, email_hash, action, source, consent_text_version,
                              consent_text_hash, ip, user_agent, details, created_at)
  SELECT id, :email_hash, 'requested', :source, :text_version, :text_hash, :ip, :user_agent,
         :details, :created_at FROM reader
), event AS (
  INSERT INTO outbox_events (name, payload, created_at, attempts)
  SELECT :event, json_build_object('reader_id', id), :created_at, 0 FROM reader
  RETURNING id
)
SELECT (SELECT array_agg(slug) FROM chosen), (SELECT id FROM reader), (SELECT id FROM event)
""").bindparams(
    bindparam("slugs", type_=postgresql.ARRAY(Topic.__table__.c.slug.type)),
    bindparam("created_at", type_=Reader.__table__.c.created_at.type),
    bindparam("details", type_=ConsentEvent.__table__.c.details.type),
    bindparam("choice", type_=PendingChoice.__table__.c.topics.type))


def sign_up_refused(session: Session, email: str) -> bool:
    """Whether the form must not email this address: it hard-bounced, complained, or an
    operator blocked it. An erased reader may come back: signing up again is a fresh
    opt-in, and confirming it lifts the erasure's suppression (see confirm())."""
    reason = session.scalar(select(Suppression.reason).where(
        Suppression.email_hash == consent.email_hash(email)))
    return reason is not None and reason != "erased"


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
    with follows.tracked(session, [reader.id], "confirm"):
        _apply_pending_choice(session, reader)
        reader.status = "active"
        reader.confirmed_at = utcnow()
    consent.record(session, reader.id, reader.email, "confirmed", source="email", method="link", ip=ip,
                   user_agent=user_agent,
                   details={"topics": [t.slug for t in reader.topics],
                            "frequency": reader.frequency})
    # Confirming proves the mailbox works and renews consent: an old erasure, bounce or
    # complaint no longer applies (an operator's own block does).
    consent.unsuppress(session, reader.email, reasons=("erased", "bounce", "complaint"))
    events.record(session, events.READER_CONFIRMED, reader_id=reader.id)
    return reader


def pending_choice(session: Session, reader: Reader) -> tuple[list[Topic], str]:
    """What a confirmation asks the reader to confirm: the waiting choice, else their own."""
    choice = session.get(PendingChoice, reader.id)
    if choice is None:
        return sorted(reader.topics, key=lambda t: t.name), reader.frequency
    # Topic slugs, as the form posted them; one retired since is no longer offered.
    topics = session.scalars(select(Topic).where(Topic.slug.in_(choice.topics),
                                                 Topic.retired_at.is_(None))).all()
    return sorted(topics, key=lambda t: t.name), choice.frequency


def _apply_pending_choice(session: Session, reader: Reader) -> None:
    choice = session.get(PendingChoice, reader.id)
    if choice is None:
        return
    topics, frequency = pending_choice(session, reader)
    if topics:  # a topic since retired drops out; none left keeps what the reader had
        reader.topics = topics
    reader.frequency = frequency
    if choice.languages:
        reader.languages = choice.languages
    session.delete(choice)


def spend_form_nonce(session: Session, nonce: str, expires_at) -> bool:
    """Mark a sign-up form's token as used; False if it was used before (a replay)."""
    spent = session.execute(_spend_nonce(sql.upsert(session, FormNonce.__table__)),
                            {"nonce": nonce, "expires_at": expires_at}).first() is not None
    if spent and random.random() < _CLEANUP_CHANCE:
        session.execute(delete(FormNonce).where(FormNonce.expires_at < utcnow()))
    return spent


@cache
def _spend_nonce(insert):
    # RETURNING, not rowcount: the driver does not always report one for ON CONFLICT.
    return insert.on_conflict_do_nothing().returning(insert.table.c.nonce)


# The spent nonces past their form's age are deleted by every so many sign-ups: cheap
# (an index range), and the table stays about one day of sign-ups long.
_CLEANUP_CHANCE = 1 / 200


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
    timezone: str | None = None,
    languages: Iterable[str] | None = None,
) -> dict:
    """Apply the preferences form; returns what changed (empty when nothing did).

    ``timezone`` None leaves the reader's as it is (a form without the field); ``languages``
    None leaves the languages read as they are, and an empty list is an error."""
    chosen = resolve_topics(session, topics)
    _check_frequency(frequency)
    if timezone is not None and not zones.known(timezone):
        raise SubscriptionError(N_("Choose your time zone from the list."), "timezone")
    reads = check_languages(languages) if languages is not None else reader.languages
    if languages is not None and reads is None:
        raise SubscriptionError(N_("Choose the languages you read among those offered."),
                                "languages")
    if pause not in PAUSES and pause != "resume":
        raise SubscriptionError(N_("Choose how long to pause."), "pause")
    changes: dict = {}
    before = sorted(t.slug for t in reader.topics)
    after = sorted(t.slug for t in chosen)
    # A retired topic is not offered on the form, so saving it drops it (the ledger says so).
    if before != after:
        changes["topics"] = [before, after]
        with follows.tracked(session, [reader.id], "preferences"):
            reader.topics = chosen
    if reader.frequency != frequency:
        changes["frequency"] = [reader.frequency, frequency]
        reader.frequency = frequency
    if timezone is not None and timezone != (reader.timezone or get_settings().timezone):
        changes["timezone"] = [reader.timezone, timezone]
        reader.timezone = timezone
    if reader.languages != reads:
        changes["languages"] = [reader.languages, reads]
        reader.languages = reads
    if pause == "resume" and reader.paused_until is not None:
        changes["paused_until"] = [reader.paused_until.isoformat(), None]
        reader.paused_until = None
    elif PAUSES.get(pause):
        until = utcnow() + PAUSES[pause]
        changes["paused_until"] = [
            reader.paused_until.isoformat() if reader.paused_until else None, until.isoformat()]
        reader.paused_until = until
    if changes:
        consent.record(session, reader.id, reader.email, "changed", source="web", method="preferences", ip=ip,
                       user_agent=user_agent, details=changes)
    return changes


def resubscribe(session: Session, token: str, *, consent_given: bool, ip: str | None = None,
                user_agent: str | None = None) -> Reader:
    """Undo an unsubscribe from the reader's own link (it proves the mailbox is theirs)."""
    reader = reader_from_token(session, "unsubscribe", token)
    if not consent_given:
        raise SubscriptionError(N_("Please tick the box to agree to receive the newsletter."),
                                "consent")
    if reader.status == "active":
        return reader
    with follows.tracked(session, [reader.id], "resubscribe"):
        reader.status = "active"
        reader.unsubscribed_at = None
        reader.confirmed_at = utcnow()
    consent.record(session, reader.id, reader.email, "confirmed", source="web", method="resubscribe", ip=ip,
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
    with follows.tracked(session, [reader.id], "unsubscribe"):
        reader.status = "unsubscribed"
        reader.unsubscribed_at = utcnow()
    edition_id = data.get("e") if isinstance(data.get("e"), int) else None
    consent.record(session, reader.id, reader.email, "withdrawn", source="email", method=method, ip=ip,
                   user_agent=user_agent, edition_id=edition_id,
                   details={"reason": reason[:500]} if reason else {})
    events.record(session, events.READER_UNSUBSCRIBED, reader_id=reader.id, method=method,
                  edition_id=edition_id)
    session.execute(
        update(Delivery)
        .where(Delivery.reader_id == reader.id, Delivery.status.in_(UNSENT))
        .values(status=DeliveryStatus.SUPPRESSED, last_error="reader unsubscribed")
    )
    return reader


def _reader_for(session: Session, data: dict) -> Reader:
    reader = session.get(Reader, data["r"])
    if reader is None or tokens.email_tag(reader.email) != data["h"]:
        raise tokens.InvalidToken("this link is not valid")
    return reader
