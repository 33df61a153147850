"""Articles in: publish or update, idempotent by URL (or the CMS's external id)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.models import Article, ArticleTag, Tag, utcnow


class ArticleError(ValueError):
    """The article given cannot be published as it is; the message says why."""


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
        return v

    @field_validator("title", "author")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        # Titles end up in Subject headers; a newline must never reach one.
        return " ".join(v.split()) if v is not None else v

    @field_validator("published_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-11-28T09:00:00Z")
        return v.astimezone(UTC) if v else v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        names = [" ".join(t.split()) for t in v]
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


def publish(session: Session, data: Any) -> tuple[Article, bool]:
    """Create or update an article; returns it and whether it is new."""
    item = validate(data)
    clauses = [Article.url == item.url]
    if item.external_id:
        clauses.append(Article.external_id == item.external_id)
    article = session.scalars(select(Article).where(or_(*clauses))).first()
    created = article is None
    now = utcnow()
    if article is None:
        article = Article(url=item.url, created_at=now, published_at=item.published_at or now)
        session.add(article)
    elif item.published_at:
        article.published_at = item.published_at
    article.url = item.url
    article.external_id = item.external_id or article.external_id
    article.title = item.title
    article.summary = item.summary
    article.author = item.author
    article.image_url = item.image_url
    article.status = "published"
    article.updated_at = now
    tags = get_or_create_tags(session, item.tags)
    article.tag_links = [ArticleTag(tag=t, tag_id=t.id, position=i) for i, t in enumerate(tags)]
    session.flush()
    if created:
        events.record(session, events.ARTICLE_PUBLISHED, article_id=article.id)
    return article, created


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
