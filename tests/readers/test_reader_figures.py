"""The dashboard's reader figures on each backend: readers per status, and the 30-day trend
from the consent ledger, by local day in the site's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from newsletter import db
from newsletter.models import ConsentEvent, Reader, utcnow
from newsletter.readers import figures


def ledger(at: datetime, action: str) -> ConsentEvent:
    return ConsentEvent(email_hash="h" * 64, action=action, source="form", created_at=at)


def test_readers_per_status_and_their_trend_by_local_day(fresh) -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    with db.session_scope() as session:
        for n, status in enumerate(["active"] * 5 + ["pending"] * 2 + ["unsubscribed"]):
            session.add(Reader(email=f"r{n}@example.org", status=status, source="test"))
        session.add_all([
            # 22:30 UTC on 5 December is already 6 December in Beirut (UTC+2).
            ledger(datetime(2026, 12, 5, 22, 30, tzinfo=UTC), "confirmed"),
            ledger(datetime(2026, 12, 6, 9, 0, tzinfo=UTC), "confirmed"),
            ledger(datetime(2026, 12, 7, 8, 0, tzinfo=UTC), "withdrawn"),
            ledger(datetime(2026, 12, 7, 8, 5, tzinfo=UTC), "requested"),  # not a change
            ledger(now - timedelta(days=40), "confirmed"),  # before the window
        ])
    with db.session_scope() as session:
        assert figures.by_status(session) == {"active": 5, "pending": 2, "unsubscribed": 1}
        days = figures.trend(session, 30, "Asia/Beirut", now=now)
        utc_days = figures.trend(session, 3, "UTC", now=now)
    assert len(days) == 30 and days[0].day == date(2026, 11, 8) and days[-1].day == now.date()
    by_day = {d.day: d for d in days}
    assert (by_day[date(2026, 12, 6)].joined, by_day[date(2026, 12, 7)].left) == (2, 1)
    assert by_day[date(2026, 12, 5)].joined == 0
    # Active at each day's end: today's count, less what happened after.
    assert [by_day[date(2026, 12, d)].active for d in (5, 6, 7)] == [4, 6, 5]
    assert [(d.joined, d.left, d.active) for d in utc_days] == [(1, 0, 5), (1, 0, 6), (0, 1, 5)]


def test_an_empty_site_has_a_flat_trend(fresh) -> None:
    with db.session_scope() as session:
        days = figures.trend(session)
        assert figures.by_status(session) == {"active": 0, "pending": 0, "unsubscribed": 0}
    assert len(days) == 30 and days[-1].day == utcnow().date()
    assert {(d.joined, d.left, d.active) for d in days} == {(0, 0, 0)}
