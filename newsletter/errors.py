"""The newsletter's own errors: one root, each class with the HTTP status it answers with.

The web layer maps every ``NewsletterError`` to its ``status`` in one handler (web/app.py):
``{"detail": message}`` under ``/api/``, the error page elsewhere. Anything else raised
while answering a request is a bug and stays a 500 that says nothing.

Hierarchy (each line: the class, its status, when it is raised)::

    NewsletterError (500) ............ the root; never raised itself
    ├── InvalidToken (400) ........... a link or form token is malformed, tampered with,
    │   │                              or made for another purpose (tokens.read)
    │   └── ExpiredToken (400) ....... a genuine link or form token that is too old
    ├── NotSignedIn (401) ............ no console session or bearer token (a console page
    │   │                              redirects to the sign-in page instead)
    │   └── SignInFailed (401) ....... wrong email or password (the same answer for both)
    ├── Forbidden (403) .............. signed in, but the role does not allow it
    │   └── CsrfRefused (403) ........ a console change without its CSRF token, or posted
    │                                  from another site
    ├── AccountLocked (429) .......... too many wrong passwords for an account or from an
    │                                  address: try again at ``until``
    ├── NotFound (404) ............... the base of "no such thing"
    │   ├── ArticleNotFound (404) .... no article with that id (withdrawing one)
    │   ├── EditionNotFound (404) .... no edition with that id (report, resume, requeue)
    │   ├── EditorNotFound (404) ..... no editor with that address or id; no such token
    │   ├── ReaderNotFound (404) ..... no reader with that address (export, erase,
    │   │                              preview, test send)
    │   ├── TopicNotFound (404) ...... no topic with that slug (update, retire)
    │   ├── SuppressionNotFound (404)  no such entry on the suppression list (console)
    │   ├── ImportNotFound (404) ..... no such console CSV import
    │   └── NothingToPreview (404) ... the next edition would send that reader or topic
    │                                  set nothing (no empty digests, not even as a preview)
    ├── Conflict (409) ............... the base of "not in a state that allows it"
    │   ├── NotPaused (409) .......... resume asked of an edition that is not paused
    │   └── LastAdmin (409) .......... removing or demoting the last admin
    ├── Invalid (422) ................ the base of "the input cannot be used as given"
    │   ├── ArticleError (422) ....... an article that cannot be published as sent
    │   ├── EditionError (422) ....... an edition that cannot be requested as asked
    │   ├── AccountError (422) ....... an editor account asked for wrongly (address, role,
    │   │                              password too short, token name)
    │   ├── PreviewError (422) ....... a preview asked for wrongly (no reader nor topics,
    │   │                              unknown topic, bad frequency)
    │   ├── TopicError (422) ......... a topic that cannot be made or changed as asked
    │   ├── SubscriptionError (422) .. bad input to a subscription (``field`` names the
    │   │                              form field at fault)
    │   ├── ImportRowError (422) ..... one row of an import that cannot be imported
    │   ├── BounceSourceError (422) .. a path to ingest that is no Maildir, mbox or message
    │   └── UnreadableReport (422) ... a bounce message built to be costly to read (too
    │                                  deeply nested): refused unread
    ├── FeedError (502) .............. a feed could not be fetched or read
    │   └── Refused (502) ............ the fetch guard refused a feed's address before
    │                                  connecting (private network, bad scheme …)
    ├── AlertError (503) ............. no alert window could be opened or joined (only
    │                                  under a pathological race; the task retries)
    └── UnsafeSettings (500) ......... the settings would run a deployment on a secret
                                       that is not secret (cli preflight, at start-up)

Errors of the mail transport (mail.mailer.MailerError and its kin, mail.dkim.SigningError)
stay in the mail room: they carry SMTP replies, decide retries inside a batch and never
reach a reader or an editor as an answer. notices.OverCeiling is a signal to send later,
not an error anyone is shown.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """The root of the newsletter's own errors; ``status`` is the HTTP status it maps to."""

    status: int = 500


class InvalidToken(NewsletterError):
    """The link is malformed, tampered with, or made for another purpose."""

    status = 400


class ExpiredToken(InvalidToken):
    """The link was genuine but is too old."""


class NotSignedIn(NewsletterError):
    """No console session, or no valid bearer token."""

    status = 401


class SignInFailed(NotSignedIn):
    """Wrong email or password: one answer for both, so the form tells nobody who has an account."""


class Forbidden(NewsletterError):
    """Signed in, but this role may not do that; nothing was changed."""

    status = 403


class CsrfRefused(Forbidden):
    """A console change without the page's CSRF token, or posted from another site."""


class AccountLocked(NewsletterError):
    """Too many wrong passwords: sign-in is refused until ``until`` (aware UTC)."""

    status = 429

    def __init__(self, message: str, until):
        super().__init__(message)
        self.until = until


class NotFound(NewsletterError):
    """What was asked for does not exist."""

    status = 404


class ArticleNotFound(NotFound):
    """No article has that id."""


class EditionNotFound(NotFound):
    """No edition has that id."""


class EditorNotFound(NotFound):
    """No editor (or API token) by that address or id."""


class ReaderNotFound(NotFound):
    """No reader has that address."""


class TopicNotFound(NotFound):
    """No topic has that slug."""


class SuppressionNotFound(NotFound):
    """No such entry on the suppression list."""


class ImportNotFound(NotFound):
    """No such console CSV import."""


class NothingToPreview(NotFound):
    """The next edition would send this reader (or topic set) nothing: no empty digests."""


class Conflict(NewsletterError):
    """The thing exists but is not in a state that allows what was asked."""

    status = 409


class NotPaused(Conflict):
    """Resume asked of an edition that is not paused."""


class LastAdmin(Conflict):
    """The last admin cannot be removed or made an editor: nobody could manage accounts."""


class Invalid(NewsletterError):
    """The input cannot be used as given; the message says why."""

    status = 422


class ArticleError(Invalid):
    """The article given cannot be published as it is; the message says why."""


class EditionError(Invalid):
    """An edition cannot be requested as asked; the message says why."""


class AccountError(Invalid):
    """An editor account or token asked for wrongly; the message says why."""


class PreviewError(Invalid):
    """The preview was asked for wrongly (no reader nor topics, unknown topic, bad frequency)."""


class TopicError(Invalid):
    """A topic cannot be made or changed as asked; the message says why."""


class SubscriptionError(Invalid):
    """Bad input to a subscription; ``field`` names the form field at fault.

    ``message`` is a catalogue id (marked N_ where raised) with ``%(name)s`` for
    ``variables``: str() is the English text (the API's), and a reader page shows it
    translated (i18n.translate(locale, exc.message_id, **exc.variables)).
    """

    def __init__(self, message: str, field: str | None = None, **variables: str):
        super().__init__(message % variables if variables else message)
        self.field = field
        self.message_id = message
        self.variables = variables


class ImportRowError(Invalid):
    """One row cannot be imported; the message says why."""


class BounceSourceError(Invalid):
    """The path is not a Maildir, an mbox file or a message file."""


class UnreadableReport(Invalid):
    """A message built to be costly to read (too deeply nested): refused unread."""


class FeedError(NewsletterError):
    """A feed could not be fetched or read; the message says why."""

    status = 502


class Refused(FeedError):
    """The guard refused a target before connecting to it."""


class AlertError(NewsletterError):
    """No alert window could be opened or joined (only under a pathological race)."""

    status = 503


class UnsafeSettings(NewsletterError):
    """The settings would run a deployment on a secret that is not secret."""

    status = 500
