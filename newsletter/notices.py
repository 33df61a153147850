"""Transactional emails to one reader (confirmation now; welcome and others later)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from newsletter import mailer, rendering, subscriptions
from newsletter.config import get_settings
from newsletter.delivery import common_context, compose, personal_links
from newsletter.models import Reader, utcnow


def send_confirmation(session: Session, reader_id: int, transport: mailer.SmtpTransport) -> bool:
    """Email the double opt-in link if one is due; returns whether a message went out.

    The send time is committed before SMTP: if the worker dies after the server took the
    message, the redelivered task finds it recent and does not send a second one.
    """
    reader = session.get(Reader, reader_id)
    if reader is None or not subscriptions.confirmation_due(reader):
        return False
    reader.confirmation_sent_at = utcnow()
    session.commit()
    context = {**common_context(), **subscriptions.confirmation_context(reader)}
    rendered = rendering.render("confirm", context)
    message_id = mailer.make_message_id(get_settings().mail_domain)
    message = compose(rendered, personal_links(reader.id, reader.email), message_id)
    try:
        transport.send(get_settings().from_email, reader.email, message)
    except mailer.TemporaryFailure:
        # Let a retried task try again rather than wait out the 24-hour limit.
        reader.confirmation_sent_at = None
        session.commit()
        raise
    return True
