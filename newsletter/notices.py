"""Transactional emails to one reader: the double opt-in confirmation, the welcome, and the
short-lived link to their own data.

Their content depends only on the reader's topics and frequency, so each variant is
rendered (Jinja2 + premailer) once per process and personalised by substitution, like
digests — a burst of sign-ups does not run premailer per reader.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from sqlalchemy.orm import Session

from newsletter import db, mailer, privacy, rendering, subscriptions, tokens
from newsletter.config import CONSENT_TEXT, get_settings
from newsletter.content import common_context, compose, personal_links
from newsletter.metrics import EMAILS
from newsletter.models import Reader, utcnow

NOTICES = ("confirm", "welcome")
_PERSONAL = ("confirm_url", "view_url")
log = logging.getLogger(__name__)
_cache: OrderedDict[tuple, rendering.RenderedEmail] = OrderedDict()


def _shared_context(template: str, reader: Reader) -> dict[str, Any]:
    return {
        **common_context(),
        **{name: rendering.placeholder(name) for name in _PERSONAL},
        "topics": [t.name for t in sorted(reader.topics, key=lambda t: t.name)],
        "frequency": reader.frequency,
        "consent_text": CONSENT_TEXT,
    }


def _rendered(template: str, reader: Reader) -> rendering.RenderedEmail:
    context = _shared_context(template, reader)
    key = (template, tuple(context["topics"]), reader.frequency)
    if key not in _cache:
        _cache[key] = rendering.render(template, context)
        if len(_cache) > 256:
            _cache.popitem(last=False)
    return _cache[key]


def personal_values(template: str, reader: Reader) -> dict[str, str]:
    """The per-reader links of a notice: confirm, view in browser, preferences, unsubscribe."""
    base = get_settings().base_url
    return {
        **personal_links(reader.id, reader.email),
        "confirm_url": f"{base}/confirm/{tokens.make('confirm', reader.id, reader.email)}",
        "view_url": f"{base}/emails/{tokens.make('view', reader.id, reader.email, t=template)}",
    }


def render_for(template: str, reader: Reader) -> rendering.RenderedEmail:
    """The notice as this reader gets it (also what "view in browser" shows)."""
    if template not in NOTICES:
        raise ValueError(f"unknown notice {template!r}")
    return rendering.personalise(_rendered(template, reader), personal_values(template, reader))


def _send(session: Session, template: str, reader: Reader,
          transport: mailer.SmtpTransport) -> None:
    values = personal_values(template, reader)
    message_id = mailer.make_message_id(get_settings().mail_domain)
    message = compose(_rendered(template, reader), values, message_id)
    try:
        transport.send(get_settings().from_email, reader.email, message)
    except mailer.MailerError as exc:
        EMAILS.labels(template, "failed", type(exc).__name__).inc()
        raise
    EMAILS.labels(template, "sent", "").inc()
    log.info("%s email sent", template, extra={"reader_id": reader.id, "kind": template})


def send_confirmation(session: Session, reader_id: int, transport: mailer.SmtpTransport) -> bool:
    """Email the double opt-in link if one is due (at most one a day); whether one went out."""
    reader = session.get(Reader, reader_id)
    if reader is None or not subscriptions.confirmation_due(reader):
        return False
    _send_once(session, "confirm", reader, "confirmation_sent_at", transport)
    return True


def send_confirmations(reader_ids: list[int], transport: mailer.SmtpTransport) -> list[int]:
    """send_confirmation for each reader of a burst of sign-ups, each in its own transaction;
    returns the readers whose email failed for a temporary reason (to try again later).

    One reader's refused address does not stop the others: it is counted and logged, as a
    task of its own would have been.
    """
    later = []
    for reader_id in reader_ids:
        try:
            with db.session_scope() as session:
                send_confirmation(session, reader_id, transport)
        except mailer.TemporaryFailure:
            later.append(reader_id)
        except mailer.PermanentFailure as exc:
            log.warning("confirmation email refused",
                        extra={"reader_id": reader_id, "reason": str(exc)})
    return later


def _data_link_email() -> rendering.RenderedEmail:
    # Not a NOTICE: it has no "view in browser" link, whose long-lived token would hand a
    # fresh data link to anyone who holds the email.
    lifetime = privacy.data_link_lifetime()
    key = ("data_access", lifetime)
    if key not in _cache:
        _cache[key] = rendering.render("data_access", {
            **common_context(), "data_url": rendering.placeholder("data_url"),
            "lifetime": lifetime})
    return _cache[key]


def send_data_link(session: Session, reader_id: int, transport: mailer.SmtpTransport) -> bool:
    """Email the reader the short-lived link to their data, unless one went out just now."""
    if not privacy.claim_data_link(session, reader_id):
        return False  # no such reader, or one went out just now
    session.commit()
    reader = session.get(Reader, reader_id)
    if reader is None:  # erased since
        return False
    values = {**personal_links(reader.id, reader.email),
              "data_url": privacy.data_link_url(reader)}
    message = compose(_data_link_email(), values,
                      mailer.make_message_id(get_settings().mail_domain))
    try:
        transport.send(get_settings().from_email, reader.email, message)
    except mailer.MailerError as exc:
        EMAILS.labels("data_access", "failed", type(exc).__name__).inc()
        if isinstance(exc, mailer.TemporaryFailure):
            reader.data_link_sent_at = None  # the retried task may send it
            session.commit()
        raise
    EMAILS.labels("data_access", "sent", "").inc()
    log.info("data_access email sent", extra={"reader_id": reader.id, "kind": "data_access"})
    return True


def send_welcome(session: Session, reader_id: int, transport: mailer.SmtpTransport) -> bool:
    """Welcome a newly confirmed reader once: what they follow and how to change it."""
    reader = session.get(Reader, reader_id)
    if reader is None or reader.status != "active" or reader.welcome_sent_at is not None:
        return False
    _send_once(session, "welcome", reader, "welcome_sent_at", transport)
    return True


def _send_once(session: Session, template: str, reader: Reader, stamp: str,
               transport: mailer.SmtpTransport) -> None:
    """Stamp ``reader.<stamp>``, commit, then send; a temporary failure unstamps it.

    Committing first means a worker that dies after the server took the message leaves
    the stamp, and the redelivered task does not send a second one; unstamping on a 4xx
    lets the retried task try again rather than wait out the stamp's limit.
    """
    setattr(reader, stamp, utcnow())
    session.commit()
    try:
        _send(session, template, reader, transport)
    except mailer.TemporaryFailure:
        setattr(reader, stamp, None)
        session.commit()
        raise
