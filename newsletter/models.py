"""The newsroom's records: topics, articles, readers, consent, editions, deliveries, outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which drops the zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; use timezone-aware UTC")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Tag(Base):
    """A name articles are filed under (syria, damascus …); readers follow topics, not tags."""

    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))


class Topic(Base):
    """What readers may follow, curated by editors: covers one or more tags.

    "Syria" can cover syria, damascus and aleppo; a tag may be in more than one topic. A
    retired topic is no longer offered and delivers nothing; its followers' rows are kept
    (the preference centre shows it as no longer offered).
    """

    __tablename__ = "topics"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # The order on the form (and the order a digest prefers when several topics fit).
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A section of the form ("Middle East", "Business"); None: the ungrouped section.
    group_name: Mapped[str | None] = mapped_column(String(128))
    retired_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tags: Mapped[list[Tag]] = relationship(secondary="topic_tags", lazy="selectin",
                                           order_by="Tag.slug")
    # The name in other languages, set in the console ({"ar": "سوريا"}); a language without
    # one shows ``name``.
    names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")

    def name_in(self, locale: str | None) -> str:
        """The topic's name as a reader in ``locale`` reads it (``name`` if none is set)."""
        return (self.names or {}).get(locale or "", "") or self.name


class TopicTag(Base):
    __tablename__ = "topic_tags"
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    __table_args__ = (Index("ix_topic_tags_tag", "tag_id"),)


class ArticleTag(Base):
    __tablename__ = "article_tags"
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    # The editor's order: the first tag is the article's main topic, where a digest files it.
    position: Mapped[int] = mapped_column(Integer, default=0)
    tag: Mapped[Tag] = relationship(lazy="joined")
    __table_args__ = (Index("ix_article_tags_tag", "tag_id"),)


class Article(Base):
    __tablename__ = "articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(String(255))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="published")
    # The language it is written in, as a BCP 47 primary subtag ("ar"): a digest carries
    # only stories in its reader's languages (newsletter.langtags).
    lang: Mapped[str] = mapped_column(String(16), default="en")
    published_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    tag_links: Mapped[list[ArticleTag]] = relationship(
        order_by=ArticleTag.position, cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def tags(self) -> list[Tag]:
        return [link.tag for link in self.tag_links]


class ArticleRevision(Base):
    """What one update changed in an article: ``{field: [old, new]}``."""

    __tablename__ = "article_revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), index=True
    )
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Worth telling a reader who already read it (see articles.is_substantial).
    substantial: Mapped[bool] = mapped_column(Boolean, default=False)


class ReaderTopic(Base):
    __tablename__ = "reader_topics"
    reader_id: Mapped[int] = mapped_column(
        ForeignKey("readers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)
    __table_args__ = (Index("ix_reader_topics_topic", "topic_id"),)


class TopicFollow(Base):
    """Append-only log of follows gained (+1) and lost (-1): an active reader starting or
    stopping to follow a live topic (newsletter.follows writes it; the dashboard's topic
    growth reads it). The sum per topic is its active followers now."""

    __tablename__ = "topic_follows"
    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once the reader is erased: the aggregate figures stay, nothing names them.
    reader_id: Mapped[int | None] = mapped_column(
        ForeignKey("readers.id", ondelete="SET NULL"), index=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    change: Mapped[int] = mapped_column(Integer)  # +1 gained, -1 lost
    # What did it: confirm, preferences, resubscribe, unsubscribe, bounce, complaint,
    # erase, import, retire, restore, backfill.
    cause: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # Growth per topic over a window: a range of one topic's rows, or of every topic's.
    __table_args__ = (Index("ix_topic_follows_at", "at", "topic_id"),)


class Reader(Base):
    """A subscriber. Only ``active`` readers receive editions."""

    __tablename__ = "readers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    frequency: Mapped[str] = mapped_column(String(16), default="weekly")
    source: Mapped[str] = mapped_column(String(32), default="form")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    welcome_sent_at: Mapped[datetime | None]
    # The last link to their own data we emailed (at most one every few minutes, so a
    # forwarded email cannot be used to flood the reader's inbox).
    data_link_sent_at: Mapped[datetime | None]
    # Upper bound of what the reader's last digest covered; the next one starts there.
    last_digest_at: Mapped[datetime | None]
    # A paused reader keeps their choices but gets nothing until this instant.
    paused_until: Mapped[datetime | None]
    # Why the last confirmation email could not be sent (an address no relay takes, a
    # message that would not build); cleared when one goes out.
    confirmation_error: Mapped[str | None] = mapped_column(String(500))
    # The reader's IANA time zone (newsletter/zones.py): daily and weekly editions reach them
    # at the send hour there. NULL: the site's TIMEZONE.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # The languages they read, in their order ("ar,en": primary subtags, comma-separated, read
    # with the reader's row in the planner's one query); NULL: every language (readers from
    # before languages, who got every story on their topics).
    languages: Mapped[str | None] = mapped_column(String(64))
    # The language the reader's pages and emails are shown in (one of LANGUAGES): the one
    # the sign-up form was shown in, changeable in the preference centre. None (readers
    # from before languages) reads as the site's LANGUAGE (i18n.locale_of).
    locale: Mapped[str | None] = mapped_column(String(16))
    topics: Mapped[list[Topic]] = relationship(secondary="reader_topics", lazy="selectin")
    # The console finds readers by the start of their address (``LIKE 'ali%'``): on
    # PostgreSQL only a pattern-ops index serves a prefix under a non-C collation.
    __table_args__ = (Index("ix_readers_email_prefix", "email",
                            postgresql_ops={"email": "varchar_pattern_ops"}),)


class PendingChoice(Base):
    """Topics and frequency asked for on the form by an address we already know.

    Kept beside the reader, not over their choices: anybody can type an address into the
    form, so what a sign-up asks for applies only once the mailbox confirms it.
    """

    __tablename__ = "pending_choices"
    reader_id: Mapped[int] = mapped_column(
        ForeignKey("readers.id", ondelete="CASCADE"), primary_key=True)
    topics: Mapped[list[Any]] = mapped_column(JSON)  # topic slugs
    frequency: Mapped[str] = mapped_column(String(16))
    languages: Mapped[str | None] = mapped_column(String(64))  # as Reader.languages
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FormNonce(Base):
    """A sign-up form already posted: its token is spent (kept until it would expire)."""

    __tablename__ = "form_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Suppression(Base):
    """An address we must not mail: erased, hard-bounced, complained. Kept only as a hash."""

    __tablename__ = "suppressions"
    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # 'hmac-sha256' (keyed with HASH_KEY), or 'sha256' for a bare hash written before keyed
    # hashes that could not be rewritten (its address was gone); see consent.suppressed_among.
    hash_scheme: Mapped[str] = mapped_column(String(16), default="hmac-sha256",
                                             server_default="hmac-sha256")
    reason: Mapped[str] = mapped_column(String(32))  # erased|bounce|complaint|admin
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BounceEvent(Base):
    """One bounce or complaint report as received: the audit trail and the soft-bounce score."""

    __tablename__ = "bounce_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id", ondelete="SET NULL"))
    # The address only as its hash, like suppressions; None when the report names none we
    # could read (mailbox providers redact complaints).
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # hard|soft|complaint
    # The enhanced status code (5.1.1); for a complaint, its feedback type (abuse, fraud …).
    status: Mapped[str | None] = mapped_column(String(32))
    diagnostic: Mapped[str] = mapped_column(String(500), default="")
    message_id: Mapped[str | None] = mapped_column(String(255))  # of our original message
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(16))  # mailbox|webhook
    # One row per (original message, recipient, kind): ingesting a report again is a no-op.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    # When the report was written (its Date), so a backlog read late still scores correctly.
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Why the report changed nothing: it named no message we sent (a forgery, backscatter).
    # NULL for a report about one of our deliveries or notices.
    unmatched: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (Index("ix_bounce_events_reader", "reader_id", "kind", "received_at"),)


class ConsentEvent(Base):
    """Append-only ledger of every opt-in, change and opt-out."""

    __tablename__ = "consent_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int | None] = mapped_column(
        ForeignKey("readers.id", ondelete="SET NULL"), index=True
    )
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))  # requested|confirmed|changed|withdrawn
    source: Mapped[str] = mapped_column(String(32))  # form|api|import|demo|email
    method: Mapped[str | None] = mapped_column(String(32))  # one-click|link|preferences|…
    consent_text_version: Mapped[str | None] = mapped_column(String(32))
    consent_text_hash: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Indexed for the dashboard's 30-day trend (readers.figures.trend).
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # An edition's report counts the unsubscribes its links caused: without this index, a
    # scan of the whole ledger (100,000 readers: 100,000 entries and more) for a handful.
    __table_args__ = (Index("ix_consent_events_edition", "edition_id"),)


class Edition(Base):
    """One send: a daily or weekly digest (or an alert) to every eligible reader."""

    __tablename__ = "editions"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="digest")
    frequency: Mapped[str] = mapped_column(String(16))
    # Scheduled editions carry their period ("2026-W48", "2026-11-28") so that two beats or
    # a retried trigger make one edition; manual ones leave it NULL.
    period_key: Mapped[str | None] = mapped_column(String(32))
    # The topic slugs a filtered edition is limited to (named "tags" before topics existed).
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(32), default="api")
    status: Mapped[str] = mapped_column(String(16), default="planning")
    # Articles published after this instant wait for the next edition, so planning the
    # same edition twice decides the same content.
    cutoff_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    distinct_digests: Mapped[int] = mapped_column(Integer, default=0)
    # What planning found: {"readers", "emails", "distinct_digests", "articles"}. For a dry
    # run these are the would-be figures and the only thing it leaves behind.
    plan_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    # The editor's note: a short intro at the top of every digest of this edition (editor
    # text, shown escaped; never part of a per-reader marker). Fixed when requested.
    note: Mapped[str | None] = mapped_column(Text)
    # Retention (editions/retention.py): when its deliveries were dropped, and the figures its
    # report read from them, kept so that the report stays what it was.
    pruned_at: Mapped[datetime | None]
    pruned_figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    __table_args__ = (UniqueConstraint("kind", "frequency", "period_key", name="uq_edition_period"),)


class Delivery(Base):
    """One reader's copy of one edition; the unit of sending, retrying and counting."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id", ondelete="SET NULL"))
    # queued → sending → sent | failed | suppressed (| retry, later)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # Fixed when the row is made so that a resend is recognisably the same message.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    # Readers with the same key get byte-identical digests but for personal links.
    content_key: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    # Who claimed it ('sending'): a ClaimHolder id. When that holder's heartbeat stops, the
    # reconciler takes the delivery back in seconds instead of after the lease.
    holder: Mapped[str | None] = mapped_column(String(120))
    # When it last went (back) to 'queued'; the reconciler re-enqueues one left there past
    # the lease (its task was lost). NULL: queued when created.
    queued_at: Mapped[datetime | None]
    # How often the reconciler took it back from a worker that died while sending it: each
    # may be a second copy (sent, not recorded), always with the same Message-ID.
    reclaims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A scheduled edition's delivery waits until the send hour in its reader's zone: not
    # claimed before, handed to the queue by the reconciler's pass when due (editions/waves.py).
    # NULL: at once (alerts, editions asked for by an editor).
    not_before: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # For a failed delivery: 'permanent' (5xx, unsendable) or 'temporary' (gave up retrying).
    failure: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("edition_id", "reader_id", name="uq_delivery_edition_reader"),
        Index("ix_deliveries_edition_status", "edition_id", "status"),
        # A reader's history (what they already got) is read by reader for each page planned.
        Index("ix_deliveries_reader", "reader_id"),
        # The reconciler looks every pass for held deliveries whose wave is due: queued ones
        # only, a small set beside the sent history.
        Index("ix_deliveries_status_not_before", "status", "not_before"),
    )


class EditionDigest(Base):
    """What one content key of an edition carries: written once however many readers share it.

    ``items`` lists, in the order the email shows them, [kind, article id, topic id, revision
    id] where kind is 'new' (the article itself, filed under that topic) or 'correction' (a
    note that the revision changed an article the reader had already received). A reader's
    history is their deliveries' content keys (once pruned, their received_digests' keys): the
    planner reads it to send each article once. Never pruned.
    One row per distinct digest instead of a row per article per reader: at 100,000 readers
    that is ~50,000 rows instead of ~3,000,000, and it was the planner's largest cost.
    """

    __tablename__ = "edition_digests"
    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True)
    content_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    items: Mapped[list[Any]] = mapped_column(JSON)
    # More than one reader of the edition gets this digest, as far as planning has got: the
    # workers keep only such digests rendered (rendering.Renderer.digest). A hint: a digest
    # whose second reader is planned later is found shared then.
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The language the email's own words are in (its reader's); its stories are each in
    # their own. NULL: the site's LANGUAGE (digests planned before languages).
    locale: Mapped[str | None] = mapped_column(String(16))


class ReceivedDigest(Base):
    """A pruned delivery's part in "never twice": which digest (edition, content key) a reader
    got, and when it was claimed if it was sent (NULL: planned, never sent). With the digest's
    article list in edition_digests this is the reader's history once the delivery is gone.

    One narrow row per reader per edition, keyed reader first: planning's history query asks
    for a page of readers, which is a range of this primary key, the same shape it reads from
    deliveries; a row per article would be 10-20 rows per digest instead of one.
    """

    __tablename__ = "received_digests"
    reader_id: Mapped[int] = mapped_column(
        ForeignKey("readers.id", ondelete="CASCADE"), primary_key=True)
    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True)
    content_key: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime | None]


class ClaimHolder(Base):
    """A sending process that may hold claims: alive while ``beat_at`` keeps moving.

    The id names the host, the process and a nonce drawn at start, so a recycled pid is a
    new holder. Rows of holders long gone are deleted by the reconciler.
    """

    __tablename__ = "claim_holders"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)


class Editor(Base):
    """Somebody who works in the console: an editor, or an admin who also runs the list.

    Removal keeps the row (``removed_at``): the audit log names editors by address, and an
    address added again gets its row back with a new password and role.
    """

    __tablename__ = "editors"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # states.EditorRole
    # An argon2 hash (accounts.passwords); never the password itself.
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Wrong passwords in a row, counted within LOGIN_LOCK_MINUTES of the last one.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failed_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """One signed-in browser. The cookie holds a random token; only its hash is kept here."""

    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    editor_id: Mapped[int] = mapped_column(ForeignKey("editors.id", ondelete="CASCADE"),
                                           index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The secret every console form and htmx request must echo (CSRF).
    csrf_secret: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    editor: Mapped[Editor] = relationship(lazy="joined")


class ApiToken(Base):
    """An editor's bearer token for the admin API: shown once, kept as a hash, revocable."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    editor_id: Mapped[int] = mapped_column(ForeignKey("editors.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, shown in lists so its owner can tell them apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    editor: Mapped[Editor] = relationship(lazy="joined")


class AuditEntry(Base):
    """Who changed what, when and from where. Append-only: nothing updates or deletes a row
    (on PostgreSQL a trigger refuses it), and erasing a reader leaves it: readers are named
    by id only."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # An editor's address, "token:NAME" for an API token, or "cli".
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))  # "article.publish", "reader.erase" …
    target: Mapped[str] = mapped_column(String(255), default="")  # "article:12", "reader:7"
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        Index("ix_audit_log_at", "at", "id"),
        Index("ix_audit_log_actor", "actor", "at"),
        Index("ix_audit_log_action", "action", "at"),
    )


class FeedPoll(Base):
    """What the last poll of one configured feed did (one row per feed, replaced each poll)."""

    __tablename__ = "feed_polls"
    id: Mapped[int] = mapped_column(primary_key=True)
    location: Mapped[str] = mapped_column(String(2048), unique=True)
    polled_at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    # ImportResult.as_dict() when it worked; the reason (no secrets: a URL and an error)
    # when it did not.
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(String(500))


class ReaderImport(Base):
    """A CSV import started in the console: its file until a worker has read it, its
    progress while it runs and what it did once done."""

    __tablename__ = "reader_imports"
    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(320))  # who started it (the audit names them)
    filename: Mapped[str] = mapped_column(String(255), default="")
    # The file's text, dropped once it has been read: it holds addresses.
    content: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # states.ImportStatus
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class OutboxEvent(Base):
    """A domain event written in the same transaction as its cause; the relay turns it into a task."""

    __tablename__ = "outbox_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class StoryClicks(Base):
    """Clicks on one story link of one edition, under one topic (issue 20).

    ``delivery_id`` is 0 for the counts of ``aggregate`` mode, which name no reader; in
    ``reader`` mode each delivery has its own row. No foreign keys: a counter must never
    fail a flush of many because one edition or article was deleted meanwhile, and the
    figures join what still exists. A delivery loses its reader on erasure (SET NULL), so
    a reader-mode row then names nobody.
    """

    __tablename__ = "story_clicks"
    edition_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime]
    # The dashboard's "top stories of the week" reads by time.
    __table_args__ = (Index("ix_story_clicks_last_at", "last_at"),)
class WebhookEndpoint(Base):
    """A URL an admin registered to be told of some events (newsletter.webhooks)."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The signing secret, encrypted with a key derived from SECRET_KEYS (webhooks/secrets.py).
    secret: Mapped[str] = mapped_column(Text)
    # The last outbox event before it was registered: it is told only of later ones.
    after_event_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="")


class WebhookPending(Base):
    """An outbox event for webhooks not yet fanned out to the endpoints that want it.

    Written in the event's own transaction (events.record), taken away by the fan-out in
    the transaction that writes the deliveries: nothing is lost between the two, and the
    fan-out never scans the outbox's history."""

    __tablename__ = "webhook_pending"
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"),
                                          primary_key=True)


class WebhookDelivery(Base):
    """One event for one endpoint: pending → delivered | dead (and back to pending by hand)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(Integer)  # the outbox event: the message's id
    event_name: Mapped[str] = mapped_column(String(64))
    # What must not overtake each other: "reader:7", "edition:3", "article:12".
    order_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When its current run of attempts began (the event, or a retry from the console): the
    # age limit counts from here.
    since: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "endpoint_id", "order_key", "event_id"),
    )
