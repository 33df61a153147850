"""The web archive of an edition ("view in browser"), with no reader-specific links."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.config import get_settings
from newsletter.models import Article, Delivery, DeliveryArticle, Edition, Tag


def edition_archive(session: Session, edition_id: int) -> dict[str, Any] | None:
    """Every article the edition carried, by topic; None if it was never sent."""
    edition = session.get(Edition, edition_id)
    if edition is None or edition.dry_run or edition.status not in ("sending", "done"):
        return None
    tz = ZoneInfo(get_settings().timezone)
    rows = session.execute(
        select(Tag, Article).distinct()
        .select_from(DeliveryArticle)
        .join(Delivery, Delivery.id == DeliveryArticle.delivery_id)
        .join(Article, Article.id == DeliveryArticle.article_id)
        .join(Tag, Tag.id == DeliveryArticle.tag_id)
        .where(Delivery.edition_id == edition_id, Article.status == "published")
    ).all()
    sections: dict[int, dict[str, Any]] = {}
    seen: set[int] = set()
    # An article filed under several topics (for different readers) appears once.
    for tag, article in sorted(rows, key=lambda r: (r[1].published_at, r[1].id), reverse=True):
        if article.id in seen:
            continue
        seen.add(article.id)
        section = sections.setdefault(tag.id, {"topic": {"slug": tag.slug, "name": tag.name},
                                               "articles": []})
        section["articles"].append({
            "title": article.title, "url": article.url, "summary": article.summary,
            "author": article.author, "image_url": article.image_url,
            "published_label": article.published_at.astimezone(tz).strftime("%-d %b %Y, %H:%M"),
        })
    ordered = sorted(sections.values(), key=lambda s: (-len(s["articles"]), s["topic"]["name"]))
    return {
        "id": edition.id,
        "kind": edition.kind,
        "frequency": edition.frequency,
        "date_label": edition.cutoff_at.astimezone(tz).strftime("%-d %B %Y"),
        "sections": ordered,
        "article_count": len(seen),
    }
