"""Articles in: publish or update, idempotent by URL (or the CMS's external id); unpublish.

Every update that changes something is kept as an ArticleRevision; a substantial one
(see is_substantial) is what readers who already got the article hear about.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import SequenceMatcher
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.models import (
    Article,
    ArticleRevision,
    ArticleTag,
    Delivery,
    Tag,
    utcnow,
)
from newsletter.untrusted import has_controls, strip_controls

# What a revision records, besides status changes (publish / unpublish).
REVISED_FIELDS = ("title", "summary", "author", "url", "image_url", "tags", "published_at")
# difflib ratio under which a changed summary is a rewrite rather than an edit.
SUMMARY_SIMILARITY = 0.8
# Deliveries whose content may still change: in 'sending' the message is being composed or
# is already on the wire.
UNSENT = ("queued", "retry")


class ArticleError(ValueError):
    """The article given cannot be published as it is; the message says why."""


class ArticleNotFound(LookupError):
    pass


class ArticleIn(BaseModel):
    url: str = Field(max_length=2048)
    title: str = Field(min_length=1, max_length=500)
    summary: str = Field(default="", max_length=5000)
    author: str | None = Field(default=None, max_length=255)
    published_at: datetime | None = None
    tags: list[str] = Field(min_length=1, max_length=20)
    image_url: str | None = Field(default=None, max_length=2048)
    external_id: str | None = Field(default=None, max_length=255)

    @field_validator("url", "image_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        if v is not None and (has_controls(v) or any(c.isspace() for c in v)):
            raise ValueError("must not contain spaces or control characters")
        return v

    @field_validator("external_id")
    @classmethod
    def _identifier(cls, v: str | None) -> str | None:
        if v is not None and has_controls(v):
            raise ValueError("must not contain control characters")
        return v

    @field_validator("title", "author", mode="before")
    @classmethod
    def _one_line(cls, v: Any) -> Any:
        # Titles end up in Subject headers; a newline must never reach one.
        return " ".join(strip_controls(v).split()) if isinstance(v, str) else v

    @field_validator("summary", mode="before")
    @classmethod
    def _prose(cls, v: Any) -> Any:
        return strip_controls(v) if isinstance(v, str) else v

    @field_validator("published_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-11-28T09:00:00Z")
        return v.astimezone(UTC) if v else v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        names = [" ".join(strip_controls(t).split()) for t in v]
        if any(not n or len(n) > 128 or not slugify(n) for n in names):
            raise ValueError("each tag must be a non-empty name of at most 128 characters")
        return names


def slugify(name: str) -> str:
    """'Gulf States' → 'gulf-states'; keeps non-Latin letters (سوريا stays سوريا)."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")
    return text[:64]


def validate(data: Any) -> ArticleIn:
    """Parse an article payload; raises ArticleError with every problem listed."""
    try:
        return ArticleIn.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'article'}: {e['msg']}" for e in exc.errors()
        )
        raise ArticleError(problems) from None


def get_or_create_tags(session: Session, names: list[str]) -> list[Tag]:
    """Tags for ``names`` in the given order, creating missing ones."""
    by_slug: dict[str, str] = {}
    for name in names:
        by_slug.setdefault(slugify(name), name)
    existing = {t.slug: t for t in session.scalars(select(Tag).where(Tag.slug.in_(by_slug)))}
    tags = []
    for slug, name in by_slug.items():
        tag = existing.get(slug)
        if tag is None:
            tag = Tag(slug=slug, name=name)
            session.add(tag)
        tags.append(tag)
    session.flush()
    return tags


@dataclass
class Published:
    """What publishing one article did: created, updated (with its revision) or unchanged."""

    article: Article
    outcome: str  # created|updated|unchanged
    revision: ArticleRevision | None = None


def publish(session: Session, data: Any) -> tuple[Article, bool]:
    """Create or update an article; returns it and whether it is new."""
    result = upsert(session, data)
    return result.article, result.outcome == "created"


def upsert(session: Session, data: Any) -> Published:
    """Create or update an article, recording what an update changed as a revision.

    Sending the same article again changes nothing (not even ``updated_at``); publishing an
    unpublished article's URL again makes it published again.
    """
    item = validate(data)
    article = _find(session, item)
    tags = get_or_create_tags(session, item.tags)
    now = utcnow()
    if article is None:
        article = Article(url=item.url, external_id=item.external_id, created_at=now,
                          updated_at=now, published_at=item.published_at or now,
                          status="published", title=item.title, summary=item.summary,
                          author=item.author, image_url=item.image_url)
        article.tag_links = [ArticleTag(tag=t, tag_id=t.id, position=i)
                             for i, t in enumerate(tags)]
        session.add(article)
        session.flush()
        events.record(session, events.ARTICLE_PUBLISHED, article_id=article.id)
        return Published(article, "created")

    before = _snapshot(article)
    after = {"title": item.title, "summary": item.summary, "author": item.author,
             "url": item.url, "image_url": item.image_url, "tags": [t.name for t in tags],
             # An update without a date keeps the first one: a feed that never dates its
             # entries must not make every poll an update.
             "published_at": (item.published_at.isoformat() if item.published_at
                              else before["published_at"])}
    changes: dict[str, list[Any]] = {f: [before[f], after[f]] for f in REVISED_FIELDS
                                     if before[f] != after[f]}
    if article.status != "published":
        changes["status"] = [article.status, "published"]
    # Two feeds carrying one story must not flip its external id back and forth.
    article.external_id = article.external_id or item.external_id
    if not changes:
        return Published(article, "unchanged")
    article.title, article.summary, article.author = item.title, item.summary, item.author
    article.url, article.image_url = item.url, item.image_url
    if item.published_at:
        article.published_at = item.published_at
    if "tags" in changes:
        article.tag_links = [ArticleTag(tag=t, tag_id=t.id, position=i)
                             for i, t in enumerate(tags)]
    article.status = "published"
    article.updated_at = now
    revision = ArticleRevision(article_id=article.id, changed_at=now, changes=changes,
                               substantial=is_substantial(changes))
    session.add(revision)
    session.flush()
    if "status" in changes:
        events.record(session, events.ARTICLE_PUBLISHED, article_id=article.id)
    return Published(article, "updated", revision)


def _find(session: Session, item: ArticleIn) -> Article | None:
    if item.external_id:
        article = session.scalar(select(Article).where(Article.external_id == item.external_id))
        if article is not None:
            if article.url != item.url:
                other = session.scalar(select(Article.id).where(Article.url == item.url))
                if other is not None:
                    raise ArticleError(f"url: already belongs to article {other}, not to "
                                       f"external_id {item.external_id!r}")
            return article
    return session.scalar(select(Article).where(Article.url == item.url))


def _snapshot(article: Article) -> dict[str, Any]:
    return {"title": article.title, "summary": article.summary, "author": article.author,
            "url": article.url, "image_url": article.image_url,
            "tags": [t.name for t in article.tags],
            "published_at": article.published_at.isoformat()}


def _words(text: str | None) -> list[str]:
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text or "").casefold()).split()


def _numbers(text: str | None) -> list[str]:
    return sorted(re.findall(r"\d+(?:[.,]\d+)*", text or ""))


def is_substantial(changes: dict[str, list[Any]]) -> bool:
    """Whether readers who already got the article should be told of this change.

    A headline whose words changed is a correction (case, spacing and punctuation alone are
    not); so is a summary rewritten (difflib ratio below 0.8) or whose numbers changed
    ("3 dead" → "30 dead"). Tags, image, link, byline and dates are housekeeping: not news
    to a reader, and a correction email for them would be noise.
    """
    if "title" in changes:
        old, new = changes["title"]
        if _words(old) != _words(new):
            return True
    if "summary" in changes:
        old, new = (v or "" for v in changes["summary"])
        if _numbers(old) != _numbers(new):
            return True
        if SequenceMatcher(None, old, new, autojunk=False).ratio() < SUMMARY_SIMILARITY:
            return True
    return False


@dataclass
class Unpublished:
    article: Article
    deliveries_changed: int  # unsent deliveries the article was taken out of
    deliveries_suppressed: int  # of those, left with nothing and so never sent


def unpublish(session: Session, article_id: int) -> Unpublished:
    """Withdraw an article: never in a later edition, and out of every delivery not yet sent."""
    # A local import: delivery imports editions, which imports this module.
    from newsletter.editions import planning as delivery

    article = session.get(Article, article_id)
    if article is None:
        raise ArticleNotFound(f"no article {article_id}")
    if article.status != "unpublished":
        now = utcnow()
        session.add(ArticleRevision(article_id=article.id, changed_at=now, substantial=False,
                                    changes={"status": [article.status, "unpublished"]}))
        article.status = "unpublished"
        article.updated_at = now
    # Writing first takes SQLite's write lock, so no sender claims a delivery between our
    # reading the deliveries and changing them (PostgreSQL locks the rows themselves).
    session.flush()
    changed, suppressed, edition_ids = _withdraw(session, article.id)
    for edition_id in edition_ids:
        delivery.finish_if_complete(session, edition_id, commit=False)
    return Unpublished(article, changed, suppressed)


def _withdraw(session: Session, article_id: int) -> tuple[int, int, set[int]]:
    """Take an article out of every unsent delivery; returns (changed, suppressed, editions).

    Each changed delivery gets the content key of what remains, ordered as digests.decide()
    would; one left with nothing is suppressed, never sent empty. Sent deliveries keep the
    old key, whose content stays stored: it is what those readers got.
    """
    from newsletter.editions.selection import Correction, content_key, items, order_sections
    from newsletter.models import Edition, EditionDigest

    still_open = select(Edition.id).where(Edition.status.in_(("planning", "sending", "paused")))
    carrying = {(e, k): stored for e, k, stored in session.execute(
        select(EditionDigest.edition_id, EditionDigest.content_key, EditionDigest.items)
        .where(EditionDigest.edition_id.in_(still_open))) if any(i[1] == article_id for i in stored)}
    if not carrying:
        return 0, 0, set()
    # FOR UPDATE (PostgreSQL): a sender's claim waits for us and then sees the new content
    # key. Deliveries already 'sending' are in the middle of SMTP and are left alone.
    rows = session.execute(
        select(Delivery.id, Delivery.edition_id, Delivery.content_key)
        .where(Delivery.status.in_(UNSENT),
               tuple_(Delivery.edition_id, Delivery.content_key).in_(list(carrying)))
        .with_for_update()
    ).all()
    if not rows:
        return 0, 0, set()
    remaining = {key: [i for i in stored if i[1] != article_id]
                 for key, stored in carrying.items()}
    published = dict(session.execute(
        select(Article.id, Article.published_at)
        .where(Article.id.in_({i[1] for rest in remaining.values() for i in rest}))).all())
    names = dict(session.execute(select(Tag.id, Tag.name)).all())
    replaced: dict[tuple[int, str], str] = {}
    empty = content_key(())
    for (edition_id, key), rest in remaining.items():
        if not rest:
            # An empty content, so that the reader's history no longer holds the article.
            replaced[(edition_id, key)] = empty
            if session.get(EditionDigest, (edition_id, empty)) is None:
                session.add(EditionDigest(edition_id=edition_id, content_key=empty, items=[]))
            continue
        sections: dict[int, list[int]] = defaultdict(list)
        for kind, article, tag_id, _ in rest:
            if kind == "new":
                sections[tag_id].append(article)
        ordered = order_sections(sections, published, names)
        fixes = tuple(Correction(a, r, t) for kind, a, t, r in rest if kind == "correction")
        new_key = replaced[(edition_id, key)] = content_key(ordered, fixes)
        if session.get(EditionDigest, (edition_id, new_key)) is None:
            session.add(EditionDigest(edition_id=edition_id, content_key=new_key,
                                      items=items(ordered, fixes)))
    session.flush()
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_key[replaced[(row.edition_id, row.content_key)]].append(row.id)
    for new_key, ids in by_key.items():
        values: dict[str, Any] = {"content_key": new_key}
        if new_key == empty:
            values.update(status="suppressed", last_error="empty after unpublish")
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(**values))
    return len(rows), len(by_key.get(empty, ())), {r.edition_id for r in rows}


def find(session: Session, id_or_url: str) -> Article:
    """An article by id ("42") or by URL; raises ArticleNotFound."""
    ref = id_or_url.strip()
    if ref.isdigit():
        article = session.get(Article, int(ref))
    else:
        article = session.scalar(select(Article).where(Article.url == ref))
    if article is None:
        raise ArticleNotFound(f"no article {ref}")
    return article


def to_dict(article: Article) -> dict[str, Any]:
    return {
        "id": article.id,
        "url": article.url,
        "external_id": article.external_id,
        "title": article.title,
        "summary": article.summary,
        "author": article.author,
        "image_url": article.image_url,
        "published_at": article.published_at.isoformat(),
        "updated_at": article.updated_at.isoformat(),
        "status": article.status,
        "tags": [{"slug": t.slug, "name": t.name} for t in article.tags],
    }
