"""Transactional emails to one reader: the double opt-in confirmation, the welcome, and the
short-lived link to their own data.

Their content depends only on the reader's topics and frequency, so each variant is
rendered (Jinja2 + premailer) once per process and personalised by substitution, like
digests — a burst of sign-ups does not run premailer per reader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, object_session

from newsletter import db, i18n, tokens, verp
from newsletter.config import CONSENT_TEXT, get_settings
from newsletter.mail import mailer, rendering, throttle
from newsletter.mail.compose import common_context, compose, personal_links
from newsletter.metrics import EMAILS
from newsletter.models import Reader, utcnow
from newsletter.readers import privacy, subscriptions

NOTICES = ("confirm", "welcome")
_PERSONAL = ("confirm_url", "view_url")
log = logging.getLogger(__name__)


def _shared_context(template: str, reader: Reader) -> dict[str, Any]:
    topics, frequency = _choice(template, reader)
    locale = i18n.locale_of(reader.locale)
    return {
        **common_context(),
        **{name: rendering.placeholder(name) for name in _PERSONAL},
        # The render's language (a key of the rendered notices kept: see render_once).
        "locale": locale,
        "topics": sorted(t.name_in(locale) for t in topics),  # as the reader reads them
        "frequency": frequency,
        "consent_text": CONSENT_TEXT,
    }


def _choice(template: str, reader: Reader) -> tuple[list, str]:
    # A confirmation asks about what the sign-up chose, which may still wait beside the
    # reader's own choices (subscriptions.subscribe).
    session = object_session(reader)
    if template == "confirm" and session is not None:
        return subscriptions.pending_choice(session, reader)
    return sorted(reader.topics, key=lambda t: t.name), reader.frequency


def _rendered(template: str, reader: Reader) -> rendering.RenderedEmail:
    # Rendered once per process for each choice of topics and frequency (the renderer keeps
    # them), so a burst of sign-ups does not run premailer per reader.
    return rendering.renderer().render_once(template, _shared_context(template, reader))


def personal_values(template: str, reader: Reader) -> dict[str, str]:
    """The per-reader links of a notice: confirm, view in browser, preferences, unsubscribe."""
    base = get_settings().base_url
    return {
        **personal_links(reader.id, reader.email),
        # The page it opens has no reader yet to ask for a language: the link names it.
        "confirm_url": f"{base}/confirm/{tokens.make('confirm', reader.id, reader.email)}"
                       f"?lang={i18n.locale_of(reader.locale)}",
        "view_url": f"{base}/emails/{tokens.make('view', reader.id, reader.email, t=template)}",
    }


def render_for(template: str, reader: Reader) -> rendering.RenderedEmail:
    """The notice as this reader gets it (also what "view in browser" shows)."""
    if template not in NOTICES:  # signed by us, naming a notice we no longer send
        raise tokens.InvalidToken("this link is not valid")
    return rendering.personalise(_rendered(template, reader), personal_values(template, reader))


def _send(session: Session, template: str, reader: Reader,
          transport: mailer.SmtpTransport) -> None:
    values = personal_values(template, reader)
    message_id = mailer.make_message_id(get_settings().mail_domain)
    message = compose(_rendered(template, reader), values, message_id)
    try:
        # Its own envelope sender (VERP), so a bounce of it names this reader and notice.
        sender = verp.envelope_sender(verp.NOTICE_KINDS[template], reader.id, reader.email)
        mailer.send_one(transport, sender, reader.email, message)
    except mailer.MailerError as exc:
        EMAILS.labels(template, "failed", type(exc).__name__).inc()
        raise
    EMAILS.labels(template, "sent", "").inc()
    log.info("%s email sent", template, extra={"reader_id": reader.id, "kind": template})


class OverCeiling(Exception):
    """The confirmation ceiling is spent for now; there is room again in ``wait_s``."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"confirmation ceiling reached; room again in {wait_s:.0f} s")
        self.wait_s = wait_s


@dataclass
class ConfirmationRun:
    """What send_confirmations did with a burst of sign-ups."""

    later: list[int] = field(default_factory=list)  # failed for now: retry with backoff
    deferred: list[int] = field(default_factory=list)  # over the ceiling: send in wait_s
    wait_s: float = 0.0
    failed: dict[int, str] = field(default_factory=dict)  # given up on, with the reason


def send_confirmation(session: Session, reader_id: int, transport: mailer.SmtpTransport,
                      ceiling: throttle.Ceiling | throttle.FileCeiling | None = None) -> bool:
    """Email the double opt-in link if one is due (at most one a day); whether one went out.

    Raises OverCeiling, before anything is stamped, when ``ceiling`` has no room.
    """
    reader = session.get(Reader, reader_id)
    if reader is None or not subscriptions.confirmation_due(reader):
        return False
    if subscriptions.sign_up_refused(session, reader.email):
        # A hard bounce or a complaint: the form answers as for anybody (no enumeration),
        # but the mailbox that refused or reported us hears nothing more from us.
        return False
    if ceiling is not None and (wait := ceiling.take()):
        raise OverCeiling(wait)
    _send_once(session, "confirm", reader, "confirmation_sent_at", transport)
    if reader.confirmation_error is not None:
        reader.confirmation_error = None
        session.commit()
    return True


def send_confirmations(reader_ids: list[int], transport: mailer.SmtpTransport) -> ConfirmationRun:
    """send_confirmation for each reader of a burst of sign-ups, each in its own transaction.

    One reader's trouble never stops the others: a refused address, or any error building
    or sending their email, fails that reader alone (the reason kept on the reader, no
    retry); a temporary refusal is handed back to retry; and over the global ceiling
    (NEWSLETTER_CONFIRMATION_RATE_PER_MINUTE) the rest wait for room, none dropped.
    """
    run = ConfirmationRun()
    ceiling = _ceiling()
    for k, reader_id in enumerate(reader_ids):
        try:
            with db.session_scope() as session:
                send_confirmation(session, reader_id, transport, ceiling)
        except OverCeiling as exc:
            run.deferred, run.wait_s = list(reader_ids[k:]), exc.wait_s
            break
        except mailer.TemporaryFailure:
            run.later.append(reader_id)
        except mailer.PermanentFailure as exc:
            _failed(run, reader_id, f"refused by the relay: {exc}")
        except Exception as exc:  # noqa: BLE001 - one reader's fault, whatever it is
            log.exception("confirmation email failed", extra={"reader_id": reader_id})
            _failed(run, reader_id, f"{type(exc).__name__}: {exc}")
    return run


def _ceiling() -> throttle.Ceiling | throttle.FileCeiling | None:
    settings = get_settings()
    return _ceiling_for(settings.confirmation_rate_per_minute, settings.broker,
                        settings.var_dir.resolve())


@lru_cache(maxsize=4)
def _ceiling_for(per_minute: int, broker: str,
                 folder: Path) -> throttle.Ceiling | throttle.FileCeiling | None:
    return throttle.ceiling_for(per_minute, broker, "newsletter:confirmations", folder)


def _failed(run: ConfirmationRun, reader_id: int, reason: str) -> None:
    """Keep why on the reader, stamped as sent so that no retry or resend loops on it."""
    run.failed[reader_id] = reason
    log.warning("confirmation email not sent", extra={"reader_id": reader_id, "reason": reason})
    try:
        with db.session_scope() as session:
            reader = session.get(Reader, reader_id)
            if reader is not None:
                reader.confirmation_error = reason[:500]
                reader.confirmation_sent_at = reader.confirmation_sent_at or utcnow()
                session.commit()
    except Exception:  # noqa: BLE001 - the log line above is the record then
        log.exception("could not record a failed confirmation", extra={"reader_id": reader_id})


def _data_link_email(locale: str) -> rendering.RenderedEmail:
    # Not a NOTICE: it has no "view in browser" link, whose long-lived token would hand a
    # fresh data link to anyone who holds the email.
    return rendering.renderer().render_once("data_access", {
        **common_context(), "data_url": rendering.placeholder("data_url"), "locale": locale,
        "lifetime": privacy.data_link_lifetime(locale)})


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
    message = compose(_data_link_email(i18n.locale_of(reader.locale)), values,
                      mailer.make_message_id(get_settings().mail_domain))
    try:
        sender = verp.envelope_sender(verp.NOTICE_KINDS["data_access"], reader.id,
                                      reader.email)
        mailer.send_one(transport, sender, reader.email, message)
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
