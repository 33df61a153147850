"""What an SMTP outcome means for a delivery: sent, retry later or failed, and whether it
condemns the address or says the relay refuses us all (a systemic failure)."""

from __future__ import annotations

import re

from newsletter.editions.deliveries import GAVE_UP, MAX_ATTEMPTS
from newsletter.mail import mailer
from newsletter.states import DeliveryStatus

# Five readers in a row failing temporarily is the relay or the network, not five mailboxes:
# per-reader trouble (greylisting, a full mailbox) comes scattered among successes. Going on
# would spend an attempt of every reader left and drive the edition into the dead letter.
SYSTEMIC_RUN = 5

_BAD_MAILBOX = re.compile(r"(?<![\d.])5\.1\.\d{1,3}\b")


def status_of(exc: mailer.MailerError | None, attempts: int) -> tuple[str, str | None]:
    """The delivery's status after this outcome, and its error."""
    if exc is None:
        return DeliveryStatus.SENT, None
    if isinstance(exc, mailer.PermanentFailure):
        return DeliveryStatus.FAILED, f"{exc.code} {exc.reason}"
    if attempts >= MAX_ATTEMPTS:
        return DeliveryStatus.FAILED, f"{GAVE_UP} {attempts} attempts: {exc.code} {exc.reason}"
    return DeliveryStatus.RETRY, f"{exc.code} {exc.reason}"


def systemic(exc: mailer.MailerError) -> bool:
    """A 5xx before any recipient (auth, TLS, greeting) refuses us, not one reader."""
    return isinstance(exc, mailer.PermanentFailure) and exc.stage in ("connect", "auth")


def bad_address(exc: mailer.MailerError) -> bool:
    """A 5.1.x at RCPT: the mailbox does not exist (RFC 3463), so stop mailing it."""
    return (isinstance(exc, mailer.PermanentFailure) and exc.stage == "rcpt"
            and bool(_BAD_MAILBOX.search(exc.reason or "")))
