"""The schedule: when editions are due (a pure function of the clock), and the tick that
requests them once per period, under concurrency and after downtime, on each backend with a
real worker and SMTP server. ``now`` is passed in: no sleeping, no clock mocking."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from newsletter import db
from newsletter.config import get_settings
from newsletter.editions import schedule
from newsletter.editions.schedule import Due, latest_due
from newsletter.models import Article, Edition, Reader
from tests.conftest import dump_log
from tests.helpers import add_readers, count, publish, wait_done

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # ISO week 49


def at(day: datetime, hours: float) -> datetime:
    return day + timedelta(hours=hours)


# ---------------------------------------------------------------- the pure function

def test_daily_is_due_from_the_send_hour_of_each_day() -> None:
    assert latest_due("daily", at(MONDAY, 5.99)) == Due("daily", at(MONDAY, 6 - 24),
                                                        "2026-11-29")
    assert latest_due("daily", at(MONDAY, 6)) == Due("daily", at(MONDAY, 6), "2026-11-30")
    assert latest_due("daily", at(MONDAY, 23.9)).period == "2026-11-30"
    assert latest_due("daily", at(MONDAY, 1), daily_send_hour=0).at == MONDAY


def test_weekly_is_due_from_the_send_weekday() -> None:
    assert latest_due("weekly", at(MONDAY, 6)) == Due("weekly", at(MONDAY, 6), "2026-W49")
    # Monday before the hour: still last week's period.
    assert latest_due("weekly", at(MONDAY, 5)) == Due("weekly", at(MONDAY, 6 - 7 * 24),
                                                      "2026-W48")
    sunday = latest_due("weekly", at(MONDAY, 6 * 24 + 20))
    assert sunday == Due("weekly", at(MONDAY, 6), "2026-W49")
    friday = latest_due("weekly", at(MONDAY, 5 * 24), weekly_send_weekday=4)
    assert friday == Due("weekly", at(MONDAY, 4 * 24 + 6), "2026-W49")


def test_periods_are_local_dates_in_the_site_time_zone() -> None:
    # 18:00 UTC on Monday is 07:00 on Tuesday in Auckland (UTC+13 in summer).
    due = latest_due("daily", at(MONDAY, 18), timezone="Pacific/Auckland")
    assert due == Due("daily", at(MONDAY, 17), "2026-12-01")
    # 03:00 UTC on Monday is still Sunday evening in New York: Sunday's period, week 48.
    assert latest_due("daily", at(MONDAY, 3), timezone="America/New_York").period == "2026-11-29"
    weekly = latest_due("weekly", at(MONDAY, 3), timezone="America/New_York")
    assert weekly == Due("weekly", at(MONDAY, -7 * 24 + 11), "2026-W48")


def test_send_time_follows_daylight_saving() -> None:
    # Berlin leaves summer time on 25 October 2026: 06:00 local is 04:00 UTC the day
    # before and 05:00 UTC that day, so the two sends are 25 hours apart.
    before = latest_due("daily", datetime(2026, 10, 24, 12, tzinfo=UTC), timezone="Europe/Berlin")
    after = latest_due("daily", datetime(2026, 10, 25, 12, tzinfo=UTC), timezone="Europe/Berlin")
    assert before.at == datetime(2026, 10, 24, 4, tzinfo=UTC)
    assert after.at == datetime(2026, 10, 25, 5, tzinfo=UTC)
    assert (before.period, after.period) == ("2026-10-24", "2026-10-25")
    # 02:00 does not exist on 29 March 2026 in Berlin: the send is at the jump (01:00 UTC).
    gap = latest_due("daily", datetime(2026, 3, 29, 3, tzinfo=UTC), timezone="Europe/Berlin",
                     daily_send_hour=2)
    assert gap == Due("daily", datetime(2026, 3, 29, 1, tzinfo=UTC), "2026-03-29")


def test_naive_or_unknown_input_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        latest_due("daily", datetime(2026, 11, 30, 6))
    with pytest.raises(ValueError, match="frequency"):
        latest_due("immediate", MONDAY)


# ---------------------------------------------------------------- the tick, on each backend

def site(**over):
    return get_settings().model_copy(update={"timezone": "UTC", "daily_send_hour": 6,
                                             "weekly_send_weekday": 0,
                                             "schedule_grace_hours": 6.0, **over})


def editions_by(frequency: str | None = None) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        query = select(Edition.frequency, Edition.period_key).order_by(Edition.id)
        if frequency:
            query = query.where(Edition.frequency == frequency)
        return [tuple(r) for r in session.execute(query)]


def test_two_schedulers_at_once_make_one_edition(fresh) -> None:
    settings, now = site(), at(MONDAY, 6.01)
    factory = db.session_factory()
    # The first scheduler has requested both editions but not committed yet.
    first = factory()
    mine = schedule.tick(first, now=now, settings=settings)
    assert sorted((e.frequency, e.period_key) for e in mine) == [("daily", "2026-11-30"),
                                                                 ("weekly", "2026-W49")]
    theirs: dict = {}

    def second() -> None:
        with factory() as session:
            theirs["ids"] = sorted(e.id for e in schedule.tick(session, now=now,
                                                               settings=settings))
            session.commit()

    racer = threading.Thread(target=second)
    racer.start()
    # It saw no edition yet, so it tries to insert and must wait for the first (a row lock
    # on PostgreSQL, the write lock on SQLite): still waiting after a second.
    racer.join(timeout=1.0)
    assert racer.is_alive()
    first.commit()
    first.close()
    racer.join(timeout=60)
    assert not racer.is_alive()
    # It raced for the daily edition and got the first one's; by the time it looked at the
    # weekly one, that was committed and so not requested again.
    daily = next(e for e in mine if e.frequency == "daily")
    assert theirs["ids"] == [daily.id]
    assert editions_by() == [("daily", "2026-11-30"), ("weekly", "2026-W49")]

    # Four beats firing at the same instant the next day: one daily edition.
    tomorrow = at(MONDAY, 24 + 6.01)
    gate = threading.Barrier(4)
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            gate.wait(timeout=10)
            with factory() as session:
                schedule.tick(session, now=tomorrow, settings=settings)
                session.commit()
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    beats = [threading.Thread(target=beat) for _ in range(4)]
    for t in beats:
        t.start()
    for t in beats:
        t.join(timeout=60)
    assert errors == []
    assert editions_by("daily") == [("daily", "2026-11-30"), ("daily", "2026-12-01")]

    # A retried trigger in the same period requests nothing.
    with db.session_scope() as session:
        assert schedule.tick(session, now=at(tomorrow, 0.5), settings=settings) == []
    assert len(editions_by()) == 3
    with db.session_scope() as session:  # and the worker planned each one
        ids = list(session.scalars(select(Edition.id)))
    for edition_id in ids:
        assert wait_done(edition_id)["status"] == "done", dump_log(fresh)


def test_a_missed_period_is_caught_up_once_with_the_missed_days(fresh) -> None:
    backend = fresh
    settings = site()
    # Real time, because articles are stamped when they reach us: the service was down
    # for three days before now.
    t2 = datetime.now(UTC)
    due = latest_due("daily", t2)
    t1 = due.at - timedelta(days=3) + timedelta(minutes=1)
    stories = {"Before the outage": t1 - timedelta(hours=2),
               "Missed day one": t1 + timedelta(hours=20),
               "Missed day two": t1 + timedelta(hours=44),
               "This morning": t2 - timedelta(minutes=30)}
    for title in stories:
        publish(title, ["Syria"])
    with db.session_scope() as session:
        for title, when in stories.items():
            session.execute(update(Article).where(Article.title == title)
                            .values(created_at=when, published_at=when))
    add_readers({"reader@example.com": ["syria"]}, frequency="daily")

    with db.session_scope() as session:
        [first] = [e for e in schedule.tick(session, now=t1, settings=settings)
                   if e.frequency == "daily"]
        first_id = first.id
    assert wait_done(first_id)["counts"]["sent"] == 1, dump_log(backend)
    [message] = backend.smtp.wait_for(1)
    assert "Before the outage" in message.get_body(("plain",)).get_content()
    backend.smtp.clear()

    # No tick for three days; then one tick sends the latest period only.
    with db.session_scope() as session:
        made = [e for e in schedule.tick(session, now=t2, settings=settings)
                if e.frequency == "daily"]
        assert [e.period_key for e in made] == [due.period]
        second_id = made[0].id
    report = wait_done(second_id)
    assert report["counts"]["sent"] == 1, dump_log(backend)
    [message] = backend.smtp.wait_for(1)
    text = message.get_body(("plain",)).get_content()
    # The catch-up reaches back to the previous edition, past the one-day window.
    for title in ("Missed day one", "Missed day two", "This morning"):
        assert title in text, title
    assert "Before the outage" not in text

    # Later ticks in the same period request nothing more.
    with db.session_scope() as session:
        assert [e for e in schedule.tick(session, now=t2 + timedelta(minutes=1),
                                         settings=settings) if e.frequency == "daily"] == []
    periods = [p for _, p in editions_by("daily")]
    assert periods == [latest_due("daily", t1).period, due.period]
    with db.session_scope() as session:
        last = session.scalar(select(Reader.last_digest_at))
    assert last == t2


def test_a_fresh_install_does_not_send_a_period_long_past(fresh) -> None:
    settings = site(schedule_grace_hours=6)
    with db.session_scope() as session:
        # Started at 13:00 on Monday: both 06:00 sends are seven hours old.
        assert schedule.tick(session, now=at(MONDAY, 13), settings=settings) == []
    with db.session_scope() as session:
        # Tuesday 06:01: the daily is due; the weekly waits for next Monday.
        made = schedule.tick(session, now=at(MONDAY, 24 + 6.01), settings=settings)
        assert [(e.frequency, e.period_key) for e in made] == [("daily", "2026-12-01")]
    with db.session_scope() as session:
        made = schedule.tick(session, now=at(MONDAY, 7 * 24 + 6.01), settings=settings)
        assert sorted((e.frequency, e.period_key) for e in made) == [
            ("daily", "2026-12-07"), ("weekly", "2026-W50")]
    with db.session_scope() as session:
        # A fresh install started within the grace window sends the period just past.
        session.execute(Edition.__table__.delete())
    with db.session_scope() as session:
        made = schedule.tick(session, now=at(MONDAY, 11), settings=settings)
        assert sorted((e.frequency, e.period_key) for e in made) == [
            ("daily", "2026-11-30"), ("weekly", "2026-W49")]
    assert count(Edition, Edition.source == "schedule") == 2
