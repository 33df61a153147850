"""Figures the console shows of an edition, on each backend with a real worker: per topic,
a sample of what it sent, bounces per edition; and what the next scheduled editions will do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter import db
from newsletter.config import get_settings
from newsletter.editions import reports, schedule
from newsletter.editions import requests as editions
from newsletter.errors import EditionNotFound
from newsletter.models import BounceEvent, Delivery
from tests.helpers import add_readers, publish, wait_done


def sent_edition(**extra) -> int:
    publish("Ceasefire talks resume", ["Syria"])
    publish("Aid convoy reaches Idlib", ["Syria"])
    publish("Gas field output rises", ["Energy"])
    add_readers({"amal@example.org": ["syria"], "bo@example.org": ["energy"],
                 "chen@example.org": ["syria", "energy"], "dina@example.org": ["syria"]})
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", **extra).id
    assert wait_done(edition_id)["counts"]["sent"] == 4
    return edition_id


def test_per_topic_figures_sample_and_bounces(fresh) -> None:
    edition_id = sent_edition()
    with db.session_scope() as session:
        topics = reports.topics(session, edition_id)
        sample = reports.sample(session, edition_id, limit=2)
        first = session.scalar(select(Delivery).where(Delivery.edition_id == edition_id)
                               .order_by(Delivery.id))
        for n, kind in enumerate(("hard", "complaint", "hard")):
            session.add(BounceEvent(reader_id=first.reader_id, kind=kind, source="mailbox",
                                    delivery_id=first.id, dedupe_key=f"k{n}"))
        session.add(BounceEvent(kind="soft", source="mailbox", dedupe_key="unmatched"))
    assert topics == [
        {"topic": "Syria", "articles": 2, "readers": 3},
        {"topic": "Energy", "articles": 1, "readers": 2},
    ]
    assert len(sample) == 2
    assert all(set(s["sections"]) <= {"Syria", "Energy"} for s in sample)
    assert {t for s in sample for ts in s["sections"].values() for t in ts} <= {
        "Ceasefire talks resume", "Aid convoy reaches Idlib", "Gas field output rises"}
    assert "@" not in repr(sample)  # no reader named
    with db.session_scope() as session:
        assert reports.bounces(session, [edition_id, edition_id + 1]) == {
            edition_id: {"hard": 2, "complaint": 1}}
        with pytest.raises(EditionNotFound):
            reports.topics(session, edition_id + 100)
        assert reports.topics(session, edition_id) == topics  # reading changes nothing


def test_a_dry_run_counts_its_topics_the_same_and_has_no_sample(fresh) -> None:
    publish("Ceasefire talks resume", ["Syria"])
    publish("Aid convoy reaches Idlib", ["Syria"])
    publish("Gas field output rises", ["Energy"])
    add_readers({"amal@example.org": ["syria"], "chen@example.org": ["syria", "energy"]})
    with db.session_scope() as session:
        dry = editions.request(session, "weekly", dry_run=True).id
        waiting = editions.request(session, "daily", dry_run=True).id
        assert reports.topics(session, waiting) is None  # not planned yet
    wait_done(dry)
    with db.session_scope() as session:
        assert reports.topics(session, dry) == [
            {"topic": "Syria", "articles": 2, "readers": 2},
            {"topic": "Energy", "articles": 1, "readers": 1}]
        assert reports.sample(session, dry) == []
    wait_done(waiting)
    with db.session_scope() as session:
        assert [r["id"] for r in reports.recent(session, 10, status=("done",))] == [waiting, dry]
        assert reports.recent(session, 10, status=("sending",)) == []
        assert [r["id"] for r in reports.recent(session, 10, offset=1)] == [dry]
        assert reports.count(session) == 2


def test_the_next_scheduled_editions_say_when_and_for_whom(fresh) -> None:
    publish("Ceasefire talks resume", ["Syria"])
    add_readers({"amal@example.org": ["syria"], "bo@example.org": ["syria"]})
    add_readers({"chen@example.org": ["syria"]}, frequency="daily")
    now = datetime.now(UTC)
    with db.session_scope() as session:
        upcoming = {u["frequency"]: u for u in schedule.upcoming(session, now)}
    assert upcoming["weekly"]["readers"] == 2 and upcoming["daily"]["readers"] == 1
    assert upcoming["weekly"]["articles"] == upcoming["daily"]["articles"] == 1
    for u in upcoming.values():
        assert now < u["at"] <= now + (timedelta(days=7) if u["frequency"] == "weekly"
                                       else timedelta(days=1))
    assert upcoming["daily"]["at"] == schedule.next_due("daily", now, get_settings()).at


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_next_due_is_the_first_send_after_now_across_a_dst_change(backend) -> None:
    settings = get_settings().model_copy(update={"timezone": "Europe/London",
                                                 "daily_send_hour": 6})
    # Just after the daily send on the eve of the autumn change (a 25-hour day follows).
    now = datetime(2026, 10, 24, 5, 1, tzinfo=UTC)  # 06:01 BST
    due = schedule.next_due("daily", now, settings)
    assert due.at == datetime(2026, 10, 25, 6, 0, tzinfo=UTC) and due.period == "2026-10-25"
    weekly = schedule.next_due("weekly", now, settings)  # Mondays at 06:00 local
    assert weekly.at == datetime(2026, 10, 26, 6, 0, tzinfo=UTC) and weekly.period == "2026-W44"
    at_the_instant = schedule.next_due("daily", due.at, settings)
    assert at_the_instant.at == datetime(2026, 10, 26, 6, 0, tzinfo=UTC)


def test_a_finished_editions_counts_are_kept_until_a_requeue_reopens_it(fresh) -> None:
    from sqlalchemy import update

    from newsletter.editions import reconcile
    from newsletter.models import ConsentEvent, Edition

    edition_id = sent_edition()
    with db.session_scope() as session:
        first = reports.report(session, edition_id)
        delivery = session.scalar(select(Delivery).where(Delivery.edition_id == edition_id))
        # Unsubscribes keep coming after an edition is done: always counted afresh.
        session.add(ConsentEvent(email_hash="h" * 64, action="withdrawn", source="email",
                                 method="one-click", edition_id=edition_id))
    with db.session_scope() as session:
        assert reports.report(session, edition_id)["counts"]["unsubscribed"] == 1
        # As if it had finished with one delivery given up after temporary failures.
        session.execute(update(Delivery).where(Delivery.id == delivery.id).values(
            status="failed", failure="temporary", last_error="451 later"))
        session.execute(update(Edition).where(Edition.id == edition_id).values(
            finished_at=first_finished(first) + timedelta(seconds=1)))
    with db.session_scope() as session:
        assert reports.report(session, edition_id)["counts"]["dead_letter"] == 1
        assert reconcile.requeue_dead(session, edition_id)["requeued"] == 1
    report = wait_done(edition_id)
    assert report["counts"]["dead_letter"] == 0 and report["counts"]["sent"] == 4


def first_finished(report: dict) -> datetime:
    return datetime.fromisoformat(report["finished_at"])
