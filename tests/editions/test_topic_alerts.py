"""Immediate alerts go to readers following a topic that covers one of the story's tags."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db
from newsletter.models import Edition, Reader
from newsletter.newsroom import topics
from newsletter.web.app import create_app
from tests.conftest import dump_log
from tests.test_alerts import (  # noqa: F401 - fixtures: a short window before the worker
    alert_window,
    backend,
    by_reader,
    publish,
    task_runs,
    text_part,
    wait_alerts_settled,
    wait_task_runs,
)


def test_an_alert_reaches_readers_of_every_topic_covering_the_story(fresh) -> None:
    rig = fresh
    with db.session_scope() as session:
        syria = topics.create(session, "Syria", tags=["syria", "aleppo"])[0]
        north = topics.create(session, "Northern Syria", tags=["aleppo", "idlib"])[0]
        gone = topics.create(session, "Aleppo Old City", tags=["aleppo"])[0]
        energy = topics.create(session, "Energy")[0]
        session.add_all([
            Reader(email="syria.now@example.com", frequency="immediate", status="active",
                   topics=[syria]),
            Reader(email="north.now@example.com", frequency="immediate", status="active",
                   topics=[north, energy]),
            Reader(email="retired.now@example.com", frequency="immediate", status="active",
                   topics=[gone]),
            Reader(email="energy.now@example.com", frequency="immediate", status="active",
                   topics=[energy]),
        ])
        topics.retire(session, "aleppo-old-city")
    runs = task_runs(rig, "newsletter.alert_article")
    publish(TestClient(create_app()), "Aleppo citadel reopens", ["Aleppo"])
    rig.smtp.wait_for(2)
    wait_task_runs(rig, "newsletter.alert_article", runs + 1)
    wait_alerts_settled(rig)
    got = by_reader(rig.smtp.messages())
    assert sorted(got) == ["north.now@example.com", "syria.now@example.com"], dump_log(rig)
    for (message,) in got.values():
        assert "Aleppo citadel reopens" in text_part(message)
        assert message["Subject"] == "Aleppo citadel reopens"


def test_a_story_only_on_a_retired_topic_opens_no_window(fresh) -> None:
    rig = fresh
    with db.session_scope() as session:
        gone = topics.create(session, "Aleppo Old City", tags=["aleppo"])[0]
        session.add(Reader(email="retired.now@example.com", frequency="immediate",
                           status="active", topics=[gone]))
        topics.retire(session, "aleppo-old-city")
    runs = task_runs(rig, "newsletter.alert_article")
    publish(TestClient(create_app()), "Aleppo citadel reopens", ["Aleppo"])
    wait_task_runs(rig, "newsletter.alert_article", runs + 1)
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 0
    assert rig.smtp.received == []
