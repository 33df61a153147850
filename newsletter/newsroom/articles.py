"""Articles in: publish or update, idempotent by URL (or the CMS's external id); mark one
withdrawn (editions.withdrawal takes it out of what is not yet sent).

Every update that changes something is kept as an ArticleRevision; a substantial one
(see is_substantial) is what readers who already got the article hear about.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import SequenceMatcher
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import events, langtags
from newsletter.config import get_settings
from newsletter.errors import ArticleError, ArticleNotFound  # noqa: F401 - re-exported
from newsletter.models import (
    Article,
    ArticleRevision,
    ArticleTag,
    utcnow,
)
from newsletter.newsroom.tags import slugify
from newsletter.newsroom.topics import article_tags
from newsletter.untrusted import has_controls, strip_controls

# What a revision records, besides status changes (publish / unpublish).
REVISED_FIELDS = ("title", "summary", "author", "url", "image_url", "tags", "published_at",
                  "lang")
# difflib ratio under which a changed summary is a rewrite rather than an edit.
SUMMARY_SIMILARITY = 0.8


class ArticleIn(BaseModel):
    url: str = Field(max_length=2048)
    title: str = Field(min_length=1, max_length=500)
    summary: str = Field(default="", max_length=5000)
    author: str | None = Field(default=None, max_length=255)
    published_at: datetime | None = None
    tags: list[str] = Field(min_length=1, max_length=20)
    image_url: str | None = Field(default=None, max_length=2048)
    external_id: str | None = Field(default=None, max_length=255)
    # BCP 47 ("ar", "en-GB"); stored as its primary subtag. None: the site's LANGUAGE for a
    # new article, the article's own for an update.
    lang: str | None = Field(default=None, max_length=langtags.MAX_LENGTH)

    @field_validator("lang")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        # Only the site's languages: a story in another one would reach no reader, silently.
        return None if v is None else langtags.among([v], get_settings().languages)[0]

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


def validate(data: Any) -> ArticleIn:
    """Parse an article payload; raises ArticleError with every problem listed."""
    try:
        return ArticleIn.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'article'}: {e['msg']}" for e in exc.errors()
        )
        raise ArticleError(problems) from None


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
    tags = article_tags(session, item.tags)
    now = utcnow()
    if article is None:
        article = Article(url=item.url, external_id=item.external_id, created_at=now,
                          updated_at=now, published_at=item.published_at or now,
                          status="published", title=item.title, summary=item.summary,
                          author=item.author, image_url=item.image_url,
                          lang=item.lang or get_settings().language)
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
                              else before["published_at"]),
             "lang": item.lang or before["lang"]}
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
    article.lang = after["lang"]
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
            "published_at": article.published_at.isoformat(), "lang": article.lang}


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


def mark_unpublished(session: Session, article_id: int) -> Article:
    """Mark an article withdrawn (a revision records it); editions.withdrawal takes it out
    of the deliveries not yet sent."""
    article = session.get(Article, article_id)
    if article is None:
        raise ArticleNotFound(f"no article {article_id}")
    if article.status != "unpublished":
        now = utcnow()
        session.add(ArticleRevision(article_id=article.id, changed_at=now, substantial=False,
                                    changes={"status": [article.status, "unpublished"]}))
        article.status = "unpublished"
        article.updated_at = now
        events.record(session, events.ARTICLE_WITHDRAWN, article_id=article.id, url=article.url)
    # Writing first takes SQLite's write lock, so no sender claims a delivery between our
    # reading the deliveries and changing them (PostgreSQL locks the rows themselves).
    session.flush()
    return article


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
        "lang": article.lang,
        "tags": [{"slug": t.slug, "name": t.name} for t in article.tags],
    }
