"""With NEWSLETTER_ALERT_WINDOW_S=0 every story is its own alert, sent at once.

A module of its own because the window is the worker's setting: this module's backend
starts a worker with window 0, tests/editions/test_alerts.py one with a 2-second window.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db
from newsletter.models import Article, Edition
from newsletter.web.app import create_app
from tests.editions.test_alerts import (
    add_readers,
    by_reader,
    publish,
    set_window,
    task_runs,
    text_part,
    wait_alerts_settled,
    wait_task_runs,
)


@pytest.fixture(scope="module")
def alert_window() -> Iterator[None]:
    yield from set_window(0)


@pytest.fixture(scope="module")
def backend(alert_window, backend):  # the window must be in the env before the worker starts
    return backend


def test_with_window_zero_each_story_is_its_own_alert(fresh) -> None:
    backend = fresh
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active"),
                 "levant.now@example.com": ("immediate", ["Syria", "Jordan"], "active"),
                 "syria.daily@example.com": ("daily", ["Syria"], "active")})
    client = TestClient(create_app())
    runs = task_runs(backend, "newsletter.alert_article")
    titles = ["Aid convoy reaches Idlib", "Amman hosts water talks", "Damascus reopens"]
    tags = [["Syria"], ["Jordan"], ["Syria", "Lebanon"]]
    for title, on in zip(titles, tags, strict=True):
        publish(client, title, on)
    # Published back to back, yet each story is an alert of its own (its window ends at it).
    backend.smtp.wait_for(5)
    wait_task_runs(backend, "newsletter.alert_article", runs + 3)
    editions = wait_alerts_settled(backend)
    got = by_reader(backend.smtp.messages())
    assert sorted(got) == ["levant.now@example.com", "syria.now@example.com"]
    assert sorted(m["Subject"] for m in got["levant.now@example.com"]) == sorted(titles)
    assert sorted(m["Subject"] for m in got["syria.now@example.com"]) == sorted(
        [titles[0], titles[2]])
    for messages in got.values():
        for m in messages:
            assert [t for t in titles if t in text_part(m)] == [m["Subject"]]
    assert len(editions) == 3
    with db.session_scope() as session:
        keys = set(session.scalars(select(Edition.period_key)))
        ids = set(session.scalars(select(Article.id)))
    assert keys == {f"article-{n}" for n in ids}
