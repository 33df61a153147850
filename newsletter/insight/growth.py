"""Topic growth: follows gained and lost per topic per day, from the follow log.

A follow is an active reader following a live topic (newsletter.follows says why and who
writes the log). Days are the site's local days (TIMEZONE), today included, oldest first.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter import sql
from newsletter.models import Reader, ReaderTopic, Topic, TopicFollow, utcnow

MAX_DAYS = 365  # the API's bound: a year of days is as far back as a chart is read


@dataclass
class TopicGrowth:
    """One topic over the window: what it gained and lost each day, and its followers now."""

    slug: str
    name: str
    retired: bool
    followers: int
    days: list[date]
    gained_on: dict[date, int] = field(default_factory=dict)
    lost_on: dict[date, int] = field(default_factory=dict)

    @property
    def gained(self) -> int:
        return sum(self.gained_on.values())

    @property
    def lost(self) -> int:
        return sum(self.lost_on.values())

    @property
    def net(self) -> int:
        return self.gained - self.lost

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.slug, "name": self.name, "retired": self.retired,
                "gained": self.gained, "lost": self.lost, "net": self.net,
                "followers": self.followers,
                "days": [{"day": d.isoformat(), "gained": self.gained_on.get(d, 0),
                          "lost": self.lost_on.get(d, 0)} for d in self.days]}


def window(days: int, timezone: str, now: datetime | None = None) -> tuple[list[date], datetime]:
    """The last ``days`` local days (today included), oldest first, and when the first began."""
    tz = ZoneInfo(timezone)
    today = (now or utcnow()).astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tz).astimezone(UTC)
    return [first + timedelta(days=k) for k in range(days)], since


def topic_growth(session: Session, days: int = 30, timezone: str = "UTC",
                 now: datetime | None = None) -> list[TopicGrowth]:
    """Every live topic, and every retired one that changed in the window: follows gained
    and lost per day and its followers now; the biggest net growth first."""
    span, since = window(days, timezone, now)
    tz = ZoneInfo(timezone)
    moved: dict[int, tuple[dict[date, int], dict[date, int]]] = defaultdict(
        lambda: (defaultdict(int), defaultdict(int)))
    for hour, topic_id, change, n in _hourly(session, since):
        gained, lost = moved[topic_id]
        day = hour.astimezone(tz).date()
        if change > 0:
            gained[day] += n
        else:
            lost[day] += n
    followers = _followers(session)
    topics = session.scalars(select(Topic).where(
        (Topic.retired_at.is_(None)) | Topic.id.in_(list(moved)))).all()
    out = [TopicGrowth(t.slug, t.name, t.retired_at is not None, followers.get(t.id, 0), span,
                       dict(moved[t.id][0]) if t.id in moved else {},
                       dict(moved[t.id][1]) if t.id in moved else {}) for t in topics]
    return sorted(out, key=lambda g: (-g.net, -g.gained, g.name))


def _hourly(session: Session, since: datetime) -> list[tuple[datetime, int, int, int]]:
    """(UTC hour, topic id, +1/-1, how many) since ``since``; an hour is put into the local
    day it starts in (a zone off UTC by a half hour moves up to half an hour of changes
    into the day before)."""
    hour = sql.utc_hour(session, TopicFollow.at)
    rows = session.execute(
        select(hour, TopicFollow.topic_id, TopicFollow.change, func.count())
        .where(TopicFollow.at >= since)
        .group_by(hour, TopicFollow.topic_id, TopicFollow.change))
    return [(datetime.strptime(h, "%Y-%m-%d %H").replace(tzinfo=UTC), topic_id, change, n)
            for h, topic_id, change, n in rows]


def _followers(session: Session) -> dict[int, int]:
    """Active readers per live topic now (what the log's sums come to)."""
    return dict(session.execute(
        select(ReaderTopic.topic_id, func.count())
        .join(Reader, Reader.id == ReaderTopic.reader_id)
        .join(Topic, Topic.id == ReaderTopic.topic_id)
        .where(Reader.status == "active", Topic.retired_at.is_(None))
        .group_by(ReaderTopic.topic_id)).all())


DASHBOARD_DAYS = 30
DASHBOARD_TOPICS = 8  # bars a phone-width chart still labels legibly
# Followers now count every active reader's topics, and a month of a big import is hundreds
# of thousands of log rows: ~0.7 s at 100,000 readers on a busy PostgreSQL. The figures of
# the last half minute serve every editor, as the dashboard's reader figures do; a new log
# row (every change writes one) makes them stale at once.
DASHBOARD_TTL_S = 30.0
_held: dict[tuple[str, str], tuple[float, int | None, dict[str, Any]]] = {}


def for_dashboard(session: Session, timezone: str) -> dict[str, Any]:
    """The dashboard's topic growth: the topics that moved in the last 30 days, the biggest
    net growth first, and the chart's figures for the first few of them."""
    key = (str(session.get_bind().engine.url), timezone)
    last = session.scalar(select(func.max(TopicFollow.id)))
    held = _held.get(key)
    if held and held[1] == last and time.monotonic() - held[0] < DASHBOARD_TTL_S:
        return held[2]
    moved = [g for g in topic_growth(session, DASHBOARD_DAYS, timezone) if g.gained or g.lost]
    top = moved[:DASHBOARD_TOPICS]
    figures = {"days": DASHBOARD_DAYS, "topics": moved, "chart": {
        "labels": [g.name for g in top], "gained": [g.gained for g in top],
        # Drawn below the axis: a topic's bar runs from what it lost to what it gained.
        "lost": [-g.lost for g in top]}}
    _held[key] = (time.monotonic(), last, figures)
    return figures
