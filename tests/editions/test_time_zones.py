"""Readers' time zones: a scheduled edition reaches each reader at the send hour in their
own zone, in waves, once, across daylight-saving changes and after downtime.

The clock is controlled as in test_schedule.py: ``now`` is passed to the schedule's tick,
to the planner (through the edition's cutoff, which is the tick's ``now``) and to the
reconciler's wave release. No sleeping, no clock mocking. The simulated weeks are in the
past (March 2026), so a claim's own check (never before not_before, by the real clock)
lets every released delivery through.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from newsletter import db, events, zones
from newsletter.config import get_settings
from newsletter.editions import planning, reconcile, schedule, waves
from newsletter.editions.schedule import latest_due
from newsletter.mail import mailer
from newsletter.models import Article, Delivery, Edition, OutboxEvent, Reader
from newsletter.sending import batch
from tests.conftest import dump_log
from tests.helpers import add_readers, publish, wait_done

LA, LONDON, AMMAN = "America/Los_Angeles", "Europe/London", "Asia/Amman"
H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def site(**over):
    return get_settings().model_copy(update={"timezone": "UTC", "daily_send_hour": 6,
                                             "weekly_send_weekday": 0,
                                             "schedule_grace_hours": 6.0, **over})


# ---------------------------------------------------------------- pure functions

def test_a_period_is_due_at_the_send_hour_of_the_earliest_zone() -> None:
    # 10 March 2026: 06:00 in Amman (UTC+3, no DST since 2022) is 03:00 UTC.
    due = latest_due("daily", utc(2026, 3, 10, 3), reader_zones=[AMMAN, LA])
    assert (due.at, due.period) == (utc(2026, 3, 10, 3), "2026-03-10")
    assert latest_due("daily", utc(2026, 3, 10, 2, 59), reader_zones=[AMMAN]).period \
        == "2026-03-09"
    # A reader in UTC+14 brings the day's edition to 16:00 UTC the evening before.
    due = latest_due("daily", utc(2026, 3, 9, 16), reader_zones=["Pacific/Kiritimati"])
    assert (due.at, due.period) == (utc(2026, 3, 9, 16), "2026-03-10")
    # Zones west of the site's change nothing: the site's own hour comes first.
    assert latest_due("daily", utc(2026, 3, 10, 6), reader_zones=[LA]).at == utc(2026, 3, 10, 6)
    weekly = latest_due("weekly", utc(2026, 3, 9, 3), reader_zones=[AMMAN])
    assert (weekly.at, weekly.period) == (utc(2026, 3, 9, 3), "2026-W11")


def test_each_zone_has_one_release_time_a_day_across_daylight_saving() -> None:
    settings = site()
    times = {d: waves.ReleaseTimes(date(2026, 3, d), settings) for d in (7, 8, 28, 29)}
    # Los Angeles moves to UTC-7 on 8 March, London to UTC+1 on 29 March; Amman stays.
    assert [times[d](LA) for d in (7, 8)] == [utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)]
    assert [times[d](LONDON) for d in (28, 29)] == [utc(2026, 3, 28, 6), utc(2026, 3, 29, 5)]
    assert [times[d](AMMAN) for d in (7, 29)] == [utc(2026, 3, 7, 3), utc(2026, 3, 29, 3)]
    # No zone (or one zoneinfo no longer knows) is the site's.
    assert times[8](None) == times[8]("Mars/Olympus_Mons") == utc(2026, 3, 8, 6)


def test_only_iana_zones_are_known() -> None:
    assert zones.known(AMMAN) and zones.known("UTC")
    for bad in ("", "Mars/Olympus_Mons", "../../etc/passwd", " Asia/Amman", "x" * 65, None):
        assert not zones.known(bad), bad
    assert zones.zone_or_none(" Asia/Amman ") == AMMAN
    assert zones.zone_or_none("<script>") is None
    groups = dict(zones.choices())
    assert LA in groups["America"] and AMMAN in groups["Asia"] and "US/Pacific" not in groups


# ---------------------------------------------------------------- the weeks, on each backend

DAILY = {"la@example.com": LA, "utc@example.com": None, "amman@example.com": AMMAN,
         "london@example.com": LONDON}
WEEKLY = {"la.weekly@example.com": LA, "amman.weekly@example.com": AMMAN}
START, END = utc(2026, 3, 6), utc(2026, 3, 31)
# [down, back): no tick, no reconciler pass. The first spans two whole days' sends; in the
# second, the day's edition was planned (Amman's wave out) before the service went down.
DOWN = [(utc(2026, 3, 12, 2), utc(2026, 3, 14, 20)), (utc(2026, 3, 20, 4), utc(2026, 3, 20, 23))]


def expected_release(day: date, zone: str | None) -> datetime:
    at = waves.send_instant(day, 6, ZoneInfo(zone or "UTC"))
    return next((back for down, back in DOWN if down <= at < back), at)


def seed_weeks() -> None:
    for name, frequency in ((DAILY, "daily"), (WEEKLY, "weekly")):
        ids = add_readers({email: ["syria"] for email in name}, frequency=frequency)
        with db.session_scope() as session:
            for email, zone in name.items():
                session.execute(update(Reader).where(Reader.id == ids[email])
                                .values(timezone=zone))
    # A story every day at 01:00 UTC: before the day's edition is planned (03:00 UTC).
    day = START - timedelta(days=1)
    while day < END:
        publish(f"Story of {day.date()}", ["Syria"])
        with db.session_scope() as session:
            session.execute(update(Article).where(Article.title == f"Story of {day.date()}")
                            .values(created_at=day + H, published_at=day + H))
        day += timedelta(days=1)


def run_clock(settings) -> None:
    """Every hour from START to END outside the downtimes: the schedule's tick, the
    planner of what it requested, the reconciler's wave release."""
    now = START
    while now < END:
        if not any(down <= now < back for down, back in DOWN):
            with db.session_scope() as session:
                requested = [e.id for e in schedule.tick(session, now=now, settings=settings)]
            for edition_id in requested:
                with db.session_scope() as session:
                    planning.plan(session, edition_id)
            with db.session_scope() as session:
                waves.release_due(session, now=now)
        now += H


def test_each_reader_gets_their_0600_once_a_period_across_dst_and_downtime(
        fresh, dispatcher) -> None:
    dispatcher.accept()  # the queue is counted from the outbox: nothing needs sending here
    seed_weeks()
    run_clock(site())

    with db.session_scope() as session:
        rows = session.execute(
            select(Reader.email, Reader.timezone, Edition.frequency, Edition.period_key,
                   Edition.requested_at, Delivery.id, Delivery.not_before, Delivery.queued_at)
            .join(Delivery, Delivery.reader_id == Reader.id)
            .join(Edition, Edition.id == Delivery.edition_id)).all()
        queued = Counter(i for payload in session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.name == events.DELIVERIES_QUEUED))
            for i in payload["delivery_ids"])
    # Every delivery went to the queue exactly once.
    assert queued == Counter({r.id: 1 for r in rows})

    days = [START.date() + timedelta(days=n) for n in range((END - START).days)]
    missed = {date(2026, 3, 12), date(2026, 3, 13)}  # wholly down: caught up on the 14th
    for email, zone in {**DAILY, **WEEKLY}.items():
        mine = sorted((r for r in rows if r.email == email), key=lambda r: r.period_key)
        weekly = email in WEEKLY
        sent_days = [d for d in days if d not in missed and (not weekly or d.weekday() == 0)]
        assert [r.period_key for r in mine] == [
            d.strftime("%G-W%V") if weekly else d.isoformat() for d in sent_days], email
        for r, day in zip(mine, sent_days, strict=True):
            # Its wave is the send hour in the reader's zone; released then (or, for a wave
            # due while we were down, at the first pass back), with its page if it was due
            # when planned (its queued_at is then the real clock's, not the simulated one).
            assert r.not_before == waves.send_instant(day, 6, ZoneInfo(zone or "UTC"))
            released = r.requested_at if r.not_before <= r.requested_at else r.queued_at
            assert released == expected_release(day, zone), (email, day)
    # Around the changes: Los Angeles 14:00 → 13:00 UTC on 8 March, London 06:00 → 05:00
    # UTC on 29 March; Amman at 03:00 UTC throughout.
    la = {r.period_key: r.not_before for r in rows if r.email == "la@example.com"}
    assert (la["2026-03-07"], la["2026-03-08"]) == (utc(2026, 3, 7, 14), utc(2026, 3, 8, 13))
    london = {r.period_key: r.not_before for r in rows if r.email == "london@example.com"}
    assert (london["2026-03-28"], london["2026-03-29"]) == (utc(2026, 3, 28, 6),
                                                            utc(2026, 3, 29, 5))
    with db.session_scope() as session:
        periods = session.execute(select(Edition.frequency, Edition.period_key)).all()
    assert len(periods) == len(set(periods)) == 23 + 4  # one edition a period, planned once


# ---------------------------------------------------------------- end to end, with the worker

def test_a_wave_goes_out_through_the_worker_when_its_time_comes(fresh) -> None:
    backend = fresh
    settings = site()
    ids = add_readers({"amman@example.com": ["syria"], "la@example.com": ["syria"]},
                      frequency="daily")
    with db.session_scope() as session:
        session.execute(update(Reader).where(Reader.id == ids["amman@example.com"])
                        .values(timezone=AMMAN))
        session.execute(update(Reader).where(Reader.id == ids["la@example.com"])
                        .values(timezone=LA))
    publish("Talks resume in Geneva", ["Syria"])
    with db.session_scope() as session:
        session.execute(update(Article).values(created_at=utc(2026, 3, 9, 20),
                                               published_at=utc(2026, 3, 9, 20)))

    # 03:00 UTC on 10 March: 06:00 in Amman. The worker plans the day's edition and sends
    # Amman's wave; Los Angeles's (13:00 UTC) is held, never handed to the broker.
    with db.session_scope() as session:
        [edition] = [e for e in schedule.tick(session, now=utc(2026, 3, 10, 3), settings=settings)
                     if e.frequency == "daily"]
        edition_id = edition.id
    [first] = backend.smtp.wait_for(1)
    assert first["To"] == "amman@example.com"
    with db.session_scope() as session:
        held = session.execute(select(Delivery.id, Delivery.status, Delivery.not_before)
                               .where(Delivery.reader_id == ids["la@example.com"])).one()
    assert (held.status, held.not_before) == ("queued", utc(2026, 3, 10, 13))

    # Not due yet, not lost: the reconciler's passes leave the held delivery alone, and a
    # batch that names it early (a stray task) does not claim it before its time.
    with db.session_scope() as session:
        assert waves.release_due(session, now=utc(2026, 3, 10, 12, 59)) == 0
        assert reconcile.requeue_lost(session, timedelta(0)) == 0
        session.execute(update(Delivery).where(Delivery.id == held.id)
                        .values(not_before=datetime.now(UTC) + timedelta(hours=1)))
    with db.session_scope() as session:
        batch.send_batch(session, [held.id], mailer.get_transport(get_settings().smtp))
    with db.session_scope() as session:
        assert session.get(Delivery, held.id).status == "queued"
        session.execute(update(Delivery).where(Delivery.id == held.id)
                        .values(not_before=utc(2026, 3, 10, 13)))

    # 13:00 UTC: the reconciler's pass releases the wave; the worker sends it, once.
    with db.session_scope() as session:
        assert waves.release_due(session, now=utc(2026, 3, 10, 13)) == 1
    with db.session_scope() as session:
        assert waves.release_due(session, now=utc(2026, 3, 10, 14)) == 0
    report = wait_done(edition_id)
    assert report["counts"]["sent"] == 2, dump_log(backend)
    messages = backend.smtp.wait_for(2)
    assert sorted(m["To"] for m in messages) == ["amman@example.com", "la@example.com"]
    assert "Talks resume in Geneva" in messages[1].get_body(("plain",)).get_content()


def test_an_editors_edition_goes_to_everyone_at_once(fresh, dispatcher) -> None:
    dispatcher.accept()
    ids = add_readers({"la@example.com": ["syria"]}, frequency="daily")
    with db.session_scope() as session:
        session.execute(update(Reader).where(Reader.id == ids["la@example.com"])
                        .values(timezone=LA))
    publish("Talks resume in Geneva", ["Syria"])
    from newsletter.editions import requests as editions

    with db.session_scope() as session:
        edition_id = editions.request(session, "daily", source="api").id
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    with db.session_scope() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.not_before is None
        assert waves.summary(session, edition_id)["waves"][0]["at"] is None


@pytest.mark.parametrize("zone", [LA, None])
def test_the_wave_summary_counts_sent_and_due(fresh, dispatcher, zone) -> None:
    dispatcher.accept()
    seed = add_readers({"a@example.com": ["syria"], "b@example.com": ["syria"]}, "daily")
    with db.session_scope() as session:
        session.execute(update(Reader).where(Reader.id == seed["b@example.com"])
                        .values(timezone=zone))
    publish("Talks resume in Geneva", ["Syria"])
    with db.session_scope() as session:
        session.execute(update(Article).values(created_at=utc(2026, 3, 9, 20),
                                               published_at=utc(2026, 3, 9, 20)))
    with db.session_scope() as session:
        edition_id = schedule.tick(session, now=utc(2026, 3, 10, 6), settings=site())[0].id
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    with db.session_scope() as session:
        summary = waves.summary(session, edition_id, now=utc(2026, 3, 10, 6))
    if zone is None:
        assert summary == {"waves": [{"at": utc(2026, 3, 10, 6), "sent": 0, "due": 2,
                                      "other": 0, "total": 2, "waiting": False}],
                           "next_at": None}
    else:
        assert [w["at"] for w in summary["waves"]] == [utc(2026, 3, 10, 6),
                                                      utc(2026, 3, 10, 13)]
        assert summary["next_at"] == utc(2026, 3, 10, 13)


def test_the_reconcilers_other_passes_and_resume_leave_a_wave_still_to_come_alone(
        fresh, dispatcher) -> None:
    """By the real clock this time: Los Angeles's wave is hours ahead."""
    dispatcher.accept()
    ids = add_readers({"amman@example.com": ["syria"], "la@example.com": ["syria"]}, "daily")
    with db.session_scope() as session:
        for email, zone in (("amman@example.com", AMMAN), ("la@example.com", LA)):
            session.execute(update(Reader).where(Reader.id == ids[email]).values(timezone=zone))
    publish("Talks resume in Geneva", ["Syria"])
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    amman_at = waves.send_instant(day, 6, ZoneInfo(AMMAN))
    with db.session_scope() as session:  # within the day's window
        session.execute(update(Article).values(created_at=amman_at - H,
                                               published_at=amman_at - H))
    with db.session_scope() as session:
        [edition_id] = [e.id for e in schedule.tick(session, now=amman_at, settings=site(
            schedule_grace_hours=100.0)) if e.frequency == "daily"]
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    la = (Delivery.reader_id == ids["la@example.com"])

    def held() -> bool:
        with db.session_scope() as session:
            return session.scalar(select(Delivery.queued_at).where(la)) is None

    # A broker that lost its queue: what was in it goes again; the held wave was never there.
    settings = get_settings()
    if settings.uses_embedded_broker:
        (settings.broker_dir / "epoch").unlink(missing_ok=True)
    else:
        import redis

        redis.Redis.from_url(settings.broker).delete("newsletter:broker-epoch")
    with db.session_scope() as session:
        assert reconcile.requeue_after_broker_loss(session) == 1  # Amman's
        assert reconcile.requeue_lost(session, timedelta(0)) == 1  # Amman's again, not LA's
    assert held()
    # Paused and resumed: what was due goes back to the queue, the wave to come waits.
    with db.session_scope() as session:
        session.execute(update(Edition).where(Edition.id == edition_id).values(status="paused"))
    with db.session_scope() as session:
        assert reconcile.resume(session, edition_id)["queued"] == 1
    assert held()
    # A relay pass now (the real clock, days before the wave) releases nothing.
    with db.session_scope() as session:
        assert reconcile.tick(session)["waves"] == 0
    assert held()


def test_a_period_stays_requested_when_the_reader_who_made_it_early_leaves(fresh,
                                                                          dispatcher) -> None:
    dispatcher.accept()
    ids = add_readers({"amman@example.com": ["syria"]}, "daily")
    with db.session_scope() as session:
        session.execute(update(Reader).values(timezone=AMMAN))
    with db.session_scope() as session:
        made = schedule.tick(session, now=utc(2026, 3, 10, 3), settings=site())
        assert [e.period_key for e in made if e.frequency == "daily"] == ["2026-03-10"]
    with db.session_scope() as session:
        session.execute(update(Reader).where(Reader.id == ids["amman@example.com"])
                        .values(status="unsubscribed"))
    # 06:00 UTC, the site's hour: the period's instant is now later than its request, but
    # the period is the one already requested.
    with db.session_scope() as session:
        assert schedule.tick(session, now=utc(2026, 3, 10, 6), settings=site()) == []
