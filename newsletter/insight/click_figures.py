"""What the click counts say: per story and per topic for an edition, the share of readers
who clicked (reader mode only), and the week's top stories."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.config import get_settings
from newsletter.editions import reports
from newsletter.models import Article, Edition, StoryClicks, Topic, utcnow


def edition_clicks(session: Session, edition_id: int) -> dict[str, Any]:
    """The edition's clicks per story and per topic, and (reader mode) the readers' share."""
    c = StoryClicks
    stories = session.execute(
        select(c.article_id, Article.title, Article.url, func.sum(c.clicks).label("clicks"))
        .join(Article, Article.id == c.article_id, isouter=True)
        .where(c.edition_id == edition_id)
        .group_by(c.article_id, Article.title, Article.url)
        .order_by(func.sum(c.clicks).desc(), c.article_id)).all()
    topics = session.execute(
        select(c.topic_id, Topic.name, func.sum(c.clicks).label("clicks"))
        .join(Topic, Topic.id == c.topic_id, isouter=True)
        .where(c.edition_id == edition_id)
        .group_by(c.topic_id, Topic.name)
        .order_by(func.sum(c.clicks).desc(), c.topic_id)).all()
    mode = get_settings().click_tracking
    return {
        "edition_id": edition_id,
        "mode": mode,
        "total": sum(s.clicks for s in stories),
        "stories": [{"article_id": s.article_id, "title": s.title or "(deleted story)",
                     "url": s.url, "clicks": int(s.clicks)} for s in stories],
        "topics": [{"topic_id": t.topic_id, "name": t.name or "(deleted topic)",
                    "clicks": int(t.clicks)} for t in topics],
        "readers": _reader_share(session, edition_id),
    }


def _reader_share(session: Session, edition_id: int) -> dict[str, Any] | None:
    """Of the readers the edition reached, how many clicked at least once: known only for
    clicks counted in reader mode (an aggregate count names no one: None when none is)."""
    clicked = session.scalar(
        select(func.count(func.distinct(StoryClicks.delivery_id)))
        .where(StoryClicks.edition_id == edition_id, StoryClicks.delivery_id != 0)) or 0
    if not clicked and get_settings().click_tracking != "reader":
        return None
    sent = reports.sent_count(session, edition_id)  # a pruned edition's is kept
    return {"sent": sent, "clicked": clicked,
            "share": round(clicked / sent, 4) if sent else None}


def top_stories(session: Session, days: int = 7, limit: int = 10) -> list[dict[str, Any]]:
    """The stories readers clicked most in the editions sent in the last ``days`` days (a
    count is not dated click by click: the edition's start dates it)."""
    since = utcnow() - timedelta(days=days)
    total = func.sum(StoryClicks.clicks)
    rows = session.execute(
        select(StoryClicks.article_id, Article.title, total.label("clicks"))
        .join(Article, Article.id == StoryClicks.article_id)
        .join(Edition, Edition.id == StoryClicks.edition_id)
        .where(Edition.started_at >= since)
        .group_by(StoryClicks.article_id, Article.title)
        .order_by(total.desc(), StoryClicks.article_id)
        .limit(limit)).all()
    return [{"article_id": r.article_id, "title": r.title, "clicks": int(r.clicks)} for r in rows]
