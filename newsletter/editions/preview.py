"""Previews for editors: the digest a reader (or a set of topics) would get next, and test sends.

A preview runs the planner's own decision (``digests.decide_page``) over an edition that is
never saved, so it shows exactly what the next edition would carry, and it changes nothing:
no delivery, no ``last_digest_at``, no token or link stored anywhere.

Its personal links are inert samples (``/unsubscribe/preview`` answers "not a valid link"),
even for a real reader: a preview test-sent to an editor must not hold a working
unsubscribe link for somebody else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.config import get_settings
from newsletter.editions import selection as digests
from newsletter.editions.content import contents_from_rows
from newsletter.editions.frequencies import DIGEST_FREQUENCIES, LOOKBACK
from newsletter.editions.requests import editors_note
from newsletter.errors import NothingToPreview, PreviewError, ReaderNotFound  # noqa: F401 - re-exported
from newsletter.mail import mailer, rendering
from newsletter.mail.compose import compose, personal_placeholders
from newsletter.models import Article, ArticleRevision, Edition, Reader, Topic, utcnow
from newsletter.newsroom.tags import slugify
from newsletter.readers.subscriptions import SubscriptionError, normalise_email

# The outbox event of a test send: {to, email, tags, frequency} → workers send it.
TEST_SEND = "preview.test_send"
SAMPLE_EMAIL = "reader@example.com"
TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class Preview:
    frequency: str
    recipient: str  # the reader's address, or a sample one for a topic set
    reader_status: str | None  # None for a topic set
    article_count: int
    correction_count: int
    content: rendering.RenderedEmail  # shared part, before personalisation
    links: dict[str, str] = field(default_factory=dict)

    @property
    def email(self) -> rendering.RenderedEmail:
        return rendering.personalise(self.content, self.links)

    @property
    def subject(self) -> str:
        return self.email.subject

    @property
    def html(self) -> str:
        return self.email.html


def build(session: Session, *, email: str | None = None, tags: Iterable[str] | None = None,
          frequency: str | None = None, now: datetime | None = None,
          note: str | None = None) -> Preview:
    """Render the digest that ``email``'s reader, or a reader following exactly the topics ``tags``,
    would get in the next edition of ``frequency`` (default: the reader's, or weekly),
    with the editor's ``note`` an edition would carry."""
    slugs = sorted({slugify(t) for t in tags or [] if t and t.strip()})
    if bool(email and email.strip()) == bool(slugs):
        raise PreviewError("name one reader (email) or a set of tags, not both")
    if frequency is not None and frequency not in DIGEST_FREQUENCIES:
        raise PreviewError("frequency must be 'daily' or 'weekly'")
    status = None
    if email:
        reader = session.scalar(select(Reader).where(Reader.email == email.strip().lower()))
        if reader is None:
            raise ReaderNotFound(f"no reader with the address {email.strip()}")
        frequency = frequency or reader.frequency
        if frequency not in DIGEST_FREQUENCIES:
            raise PreviewError(f"{reader.email} gets {reader.frequency} alerts, not digests; "
                               "ask for a daily or weekly preview")
        languages, locale = digests.reader_languages(reader.languages, reader.locale)
        row = digests.ReaderRow(reader.id, reader.last_digest_at,
                                frozenset(t.id for t in reader.topics), timezone=reader.timezone,
                                languages=languages, locale=locale)
        recipient, status = reader.email, reader.status
        who = f"{reader.email} since their last digest"
    else:
        # ``tags`` name topics by slug (the option kept its name from before topics).
        found = dict(session.execute(select(Topic.slug, Topic.id).where(
            Topic.slug.in_(slugs), Topic.retired_at.is_(None))).all())
        if unknown := sorted(set(slugs) - set(found)):
            raise PreviewError(f"unknown tag(s): {', '.join(unknown)} (name live topics "
                               "by their slug)")
        frequency = frequency or "weekly"
        # No reader has id 0: nothing was ever sent to it, as for a newcomer on these tags.
        row = digests.ReaderRow(0, None, frozenset(found.values()))
        recipient = SAMPLE_EMAIL
        who = f"{', '.join(slugs)} in the last {LOOKBACK[frequency].days} day(s)"
    # Never added to the session: the preview saves nothing.
    edition = Edition(kind="digest", frequency=frequency, tags=None, dry_run=False,
                      cutoff_at=now or utcnow(), note=editors_note(note))
    candidates = digests.candidate_articles(session, edition)
    chosen = digests.decide_page(session, candidates, [row])
    if not chosen:
        raise NothingToPreview(f"the next {frequency} edition has nothing new for {who}")
    digest = chosen[0]
    # The send's own path: the same plain data rendered by the same renderer (an edition
    # never saved has no id, so no archive page: its link is the site's).
    content = rendering.renderer().rendered_digest(
        contents_from_rows(edition, _rows(session, digest), locale=digest.locale))
    settings = get_settings()
    links = {name: f"{settings.base_url}/{name.removesuffix('_url')}/preview"
             for name in personal_placeholders()}
    links["email"] = recipient
    return Preview(frequency, recipient, status, len(digest.article_ids),
                   len(digest.corrections), content, links)


def _rows(session: Session, digest: digests.Digest) -> list[tuple]:
    """The digest as the (topic_id, kind, Article, Topic, revision) rows a delivery would hold."""
    ids = set(digest.article_ids) | {c.article_id for c in digest.corrections}
    articles = {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(ids)))}
    topics = {t.id: t for t in session.scalars(select(Topic))}
    revisions = {r.id: r for r in session.scalars(select(ArticleRevision).where(
        ArticleRevision.id.in_([c.revision_id for c in digest.corrections])))}
    return ([(s.topic_id, "new", articles[a], topics[s.topic_id], None)
             for s in digest.sections for a in s.article_ids]
            + [(c.topic_id, "correction", articles[c.article_id], topics[c.topic_id],
                revisions.get(c.revision_id)) for c in digest.corrections])


def request_test_send(session: Session, to: str, *, email: str | None = None,
                      tags: Iterable[str] | None = None,
                      frequency: str | None = None) -> Preview:
    """Check that the preview exists and queue it as one test email to ``to``."""
    to = _address(to)
    preview = build(session, email=email, tags=tags, frequency=frequency)
    events.record(session, TEST_SEND, to=to, email=email or "",
                  tags=sorted({slugify(t) for t in tags or [] if t and t.strip()}),
                  frequency=preview.frequency)
    return preview


def send_test(session: Session, to: str, transport: mailer.SmtpTransport, *,
              email: str | None = None, tags: Iterable[str] | None = None,
              frequency: str | None = None) -> str:
    """Send the preview to ``to`` as one "[TEST]" email; records nothing. Returns its Message-ID."""
    to = _address(to)
    preview = build(session, email=email, tags=tags, frequency=frequency)
    content = rendering.RenderedEmail(subject=TEST_PREFIX + preview.content.subject,
                                      text=preview.content.text, html=preview.content.html)
    settings = get_settings()
    message_id = mailer.make_message_id(settings.mail_domain)
    message = compose(content, {**preview.links, "email": to}, message_id)
    # To the bounce mailbox, untokened: a test send is no reader's, so its bounce is unmatched.
    mailer.send_one(transport, "@".join(settings.bounce_mailbox), to, message)
    return message_id


def _address(to: str) -> str:
    try:
        return normalise_email(to)
    except SubscriptionError:
        raise PreviewError(f"not an email address: {to!r}") from None
