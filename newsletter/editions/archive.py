"""The web archive of an edition ("view in browser"), with no reader-specific links."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.config import get_settings
from newsletter.models import Article, Delivery, Edition, EditionDigest, Topic


def edition_archive(session: Session, edition_id: int) -> dict[str, Any] | None:
    """Every article the edition carried, by topic; None if it was never sent."""
    edition = session.get(Edition, edition_id)
    if edition is None or edition.dry_run or edition.status not in ("sending", "done"):
        return None
    tz = ZoneInfo(get_settings().timezone)
    # Contents that reached at least one reader's delivery (an unpublish may have replaced
    # some before any was sent: they stay stored for no one).
    # A pruned edition has no deliveries left: all its contents (a replaced one carried
    # nothing still published that its replacement does not).
    digests = select(EditionDigest.items).where(EditionDigest.edition_id == edition_id)
    if edition.pruned_at is None:
        used = select(Delivery.content_key).where(Delivery.edition_id == edition_id).distinct()
        digests = digests.where(EditionDigest.content_key.in_(used))
    pairs = {(i[2], i[1]) for stored in session.scalars(digests) for i in stored}
    topics = {t.id: t for t in session.scalars(select(Topic).where(
        Topic.id.in_({t for t, _ in pairs})))} if pairs else {}
    articles = {a.id: a for a in session.scalars(select(Article).where(
        Article.id.in_({a for _, a in pairs}), Article.status == "published"))} if pairs else {}
    # Sorted by topic first, so that an article under several topics files under the same
    # one each time the page is built.
    rows = [(topics[t], articles[a]) for t, a in sorted(pairs) if t in topics and a in articles]
    sections: dict[int, dict[str, Any]] = {}
    seen: set[int] = set()
    # An article filed under several topics (for different readers) appears once.
    for topic, article in sorted(rows, key=lambda r: (r[1].published_at, r[1].id), reverse=True):
        if article.id in seen:
            continue
        seen.add(article.id)
        section = sections.setdefault(topic.id, {
            "topic": {"slug": topic.slug, "name": topic.name, "names": topic.names or {}},
            "articles": []})
        section["articles"].append({
            "title": article.title, "url": article.url, "summary": article.summary,
            "author": article.author, "image_url": article.image_url,
            "published_label": article.published_at.astimezone(tz).strftime("%-d %b %Y, %H:%M"),
            "published_at": article.published_at,  # for pages that write it per language
        })
    ordered = sorted(sections.values(), key=lambda s: (-len(s["articles"]), s["topic"]["name"]))
    return {
        "id": edition.id,
        "kind": edition.kind,
        "frequency": edition.frequency,
        "date_label": edition.cutoff_at.astimezone(tz).strftime("%-d %B %Y"),
        "cutoff_at": edition.cutoff_at,
        "sections": ordered,
        "article_count": len(seen),
    }
