"""How many readers we have and how that moved: the console dashboard's reader figures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import ConsentEvent, Reader, utcnow

STATUSES = ("active", "pending", "unsubscribed")


def by_status(session: Session) -> dict[str, int]:
    """Readers per status: active, pending, unsubscribed (each present, 0 when none)."""
    counts = dict(session.execute(
        select(Reader.status, func.count()).group_by(Reader.status)).all())
    return {status: counts.get(status, 0) for status in STATUSES}


@dataclass(frozen=True)
class Day:
    """One local day of the trend: who joined (confirmed), who left (withdrew), and the
    active readers at its end."""

    day: date
    joined: int
    left: int
    active: int


def trend(session: Session, days: int = 30, timezone: str = "UTC",
          now: datetime | None = None, active: int | None = None) -> list[Day]:
    """The last ``days`` local days (today included), oldest first, from the consent
    ledger: confirmations and withdrawals per day, and the active readers at each day's end
    (today's ``active`` count, counted here if not given, less what happened after)."""
    tz = ZoneInfo(timezone)
    now = now or utcnow()
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tz).astimezone(UTC)
    joined: Counter[date] = Counter()
    left: Counter[date] = Counter()
    for hour, action, n in _hourly(session, since):
        day = hour.astimezone(tz).date()
        (joined if action == "confirmed" else left)[day] += n
    if active is None:
        active = by_status(session)["active"]
    out: list[Day] = []
    for k in range(days):  # walked back from today: each earlier day ends before its successors
        day = today - timedelta(days=k)
        out.append(Day(day, joined[day], left[day], max(active, 0)))
        active -= joined[day] - left[day]
    return out[::-1]


def _hourly(session: Session, since: datetime) -> list[tuple[datetime, str, int]]:
    """(UTC hour, action, count) of confirmations and withdrawals since ``since``. Counted by
    the hour in SQL so that a day of a large import is a row, not a row per reader; an hour
    is bucketed into the local day it starts in (a zone off UTC by a half hour puts up to
    half an hour at a day's edge into its neighbour)."""
    if session.get_bind().dialect.name == "postgresql":
        hour = func.to_char(func.timezone("UTC", ConsentEvent.created_at), "YYYY-MM-DD HH24")
    else:
        hour = func.strftime("%Y-%m-%d %H", ConsentEvent.created_at)
    rows = session.execute(
        select(hour, ConsentEvent.action, func.count())
        .where(ConsentEvent.created_at >= since,
               ConsentEvent.action.in_(("confirmed", "withdrawn")))
        .group_by(hour, ConsentEvent.action))
    return [(datetime.strptime(h, "%Y-%m-%d %H").replace(tzinfo=UTC), action, n)
            for h, action, n in rows]
