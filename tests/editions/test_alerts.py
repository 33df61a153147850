"""Immediate alerts through a real worker and SMTP server, on each backend.

The worker runs with a 5-second alert window here (tests/editions/test_alerts_window0.py runs one
with a window of 0): a burst of stories inside the window becomes one email per reader.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from newsletter import db, events
from newsletter.config import reload_settings
from newsletter.editions import alerts
from newsletter.editions import selection as digests
from newsletter.mail import rendering
from newsletter.models import Article, Delivery, Edition, OutboxEvent, Reader, utcnow
from newsletter.newsroom import articles
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, offer_topics

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Long enough that three stories published one after another land in one window on a loaded
# machine (at 2 s, two xdist processes on two cores split the burst now and then).
WINDOW_S = 5


def set_window(seconds: float) -> Iterator[None]:
    """Set the alert window for this process and the worker the backend starts next."""
    before = os.environ.get("NEWSLETTER_ALERT_WINDOW_S")
    os.environ["NEWSLETTER_ALERT_WINDOW_S"] = str(seconds)
    reload_settings()
    yield
    if before is None:
        os.environ.pop("NEWSLETTER_ALERT_WINDOW_S", None)
    else:
        os.environ["NEWSLETTER_ALERT_WINDOW_S"] = before
    reload_settings()


@pytest.fixture(scope="module")
def alert_window() -> Iterator[None]:
    yield from set_window(WINDOW_S)


@pytest.fixture(scope="module")
def backend(alert_window, backend):  # the window must be in the env before the worker starts
    return backend


# ---------------------------------------------------------------- helpers

def add_readers(readers: dict[str, tuple[str, list[str], str]]) -> None:
    """email → (frequency, topic names, status); topics are created as needed."""
    with db.session_scope() as session:
        for email, (frequency, topics, status) in readers.items():
            session.add(Reader(email=email, frequency=frequency, status=status,
                               topics=offer_topics(session, *topics)))


def publish(client: TestClient, title: str, tags: list[str]) -> int:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    r = client.post("/api/articles", headers=AUTH, json={
        "url": f"https://news.example/a/{slug}", "title": title, "summary": f"About {title}.",
        "tags": tags})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def task_runs(backend, task: str) -> int:
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded",
                          backend.worker_log.read_text(errors="replace")))


def wait_task_runs(backend, task: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while task_runs(backend, task) < count:
        assert time.monotonic() < deadline, f"{task} ran < {count} times\n{dump_log(backend)}"
        time.sleep(0.05)


def wait_alerts_settled(backend, timeout: float = 60) -> list[Edition]:
    """Every alert edition done: its deliveries all recorded, nothing left to send."""
    deadline = time.monotonic() + timeout
    while True:
        with db.session_scope() as session:
            found = list(session.scalars(select(Edition).where(Edition.kind == "alert")
                                         .order_by(Edition.id)))
        if found and all(e.status == "done" for e in found):
            return found
        states = [(e.id, e.status) for e in found]
        assert time.monotonic() < deadline, f"alerts unsettled: {states}\n{dump_log(backend)}"
        time.sleep(0.05)


def text_part(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def by_reader(messages) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in messages:
        out.setdefault(str(m["To"]), []).append(m)
    return out


@pytest.fixture
def no_dispatch(dispatcher) -> None:
    """Events stay in the outbox: the worker does not interfere with a domain-level test."""
    dispatcher.drop()


# ---------------------------------------------------------------- through the worker

BURST = [("Aid convoy reaches Idlib", ["Syria"]),
         ("Amman hosts water talks", ["Jordan"]),
         ("Damascus reopens to flights", ["Syria", "Lebanon"])]


def test_a_burst_of_three_stories_becomes_one_alert_per_reader(fresh) -> None:
    backend = fresh
    add_readers({
        "syria.now@example.com": ("immediate", ["Syria"], "active"),
        "levant.now@example.com": ("immediate", ["Syria", "Jordan"], "active"),
        "jordan.now@example.com": ("immediate", ["Jordan"], "active"),
        "iran.now@example.com": ("immediate", ["Iran"], "active"),
        "pending.now@example.com": ("immediate", ["Syria"], "pending"),
        "syria.daily@example.com": ("daily", ["Syria", "Jordan"], "active"),
        "syria.weekly@example.com": ("weekly", ["Syria"], "active"),
    })
    client = TestClient(create_app())
    runs = task_runs(backend, "newsletter.alert_article")
    for title, tags in BURST:
        publish(client, title, tags)

    messages = backend.smtp.wait_for(3)
    wait_task_runs(backend, "newsletter.alert_article", runs + len(BURST))
    (edition,) = wait_alerts_settled(backend)  # one window for the whole burst
    messages = backend.smtp.messages()
    got = by_reader(messages)
    assert sorted(got) == ["jordan.now@example.com", "levant.now@example.com",
                           "syria.now@example.com"], dump_log(backend)
    assert all(len(m) == 1 for m in got.values())

    expected = {"levant.now@example.com": {t for t, _ in BURST},
                "syria.now@example.com": {BURST[0][0], BURST[2][0]},
                "jordan.now@example.com": {BURST[1][0]}}
    for email, (message,) in got.items():
        text = text_part(message)
        assert {t for t, _ in BURST if t in text} == expected[email]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got["levant.now@example.com"][0]["Subject"] == "3 new stories on Syria and Jordan"
    assert got["syria.now@example.com"][0]["Subject"] == "2 new stories on Syria"
    assert got["jordan.now@example.com"][0]["Subject"] == "Amman hosts water talks"
    with db.session_scope() as session:
        created = session.scalars(select(Article.created_at)).all()
        edition = session.get(Edition, edition.id)
        assert edition.frequency == "immediate" and edition.period_key is None
        assert edition.requested_at == min(created)
        # It ends a window after the story whose task opened it (tasks may run out of order).
        assert edition.cutoff_at in {c + timedelta(seconds=WINDOW_S) for c in created}
        assert session.scalar(select(func.count()).select_from(Delivery)) == 3


def test_a_story_nobody_immediate_follows_sends_nothing(fresh) -> None:
    backend = fresh
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active"),
                 "russia.daily@example.com": ("daily", ["Russia"], "active"),
                 "russia.gone@example.com": ("immediate", ["Russia"], "unsubscribed")})
    runs = task_runs(backend, "newsletter.alert_article")
    publish(TestClient(create_app()), "Kremlin envoy in Doha", ["Russia"])
    wait_task_runs(backend, "newsletter.alert_article", runs + 1)
    # The task has run and opened no window, so nothing can be sent later either.
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 0
    assert backend.smtp.received == []


def test_a_lost_doorbell_is_made_good_by_the_sweep_and_planned_once(fresh, dispatcher) -> None:
    from workers.celery_app import get_app
    from workers.dispatch import dispatch

    backend = fresh
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active")})
    # The broker loses the timed "close the window" task: only beat's sweep is left. (The
    # story's task runs here, in this process, so that this dispatcher sees the doorbell.)
    lost = {events.ARTICLE_PUBLISHED, events.ALERT_WINDOW_OPENED}
    with dispatcher.use(lambda event_id, name, payload: True if name in lost
                        else dispatch(event_id, name, payload)):
        with db.session_scope() as session:
            (story,) = stories(session, "Aid convoy reaches Idlib")
        with db.session_scope() as session:
            window = alerts.on_published(session, story.id)
            assert window.status == "open"
        time.sleep(max(0.0, (window.cutoff_at - utcnow()).total_seconds()) + 0.3)
        with db.session_scope() as session:
            assert session.get(Edition, window.id).status == "open"  # nobody rang
        for _ in range(3):  # beat's sweep, more than once: the window is planned once
            get_app().send_task("newsletter.close_alert_windows")
        backend.smtp.wait_for(1)
        (edition,) = wait_alerts_settled(backend)
    assert edition.id == window.id
    assert [m["To"] for m in backend.smtp.messages()] == ["syria.now@example.com"]
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.name == events.EDITION_REQUESTED)) == 1


# ---------------------------------------------------------------- the window, in the domain

def stories(session, *titles: str, tags: tuple[str, ...] = ("Syria",)) -> list[Article]:
    return [articles.publish(session, {"url": f"https://news.example/w/{i}-{len(titles)}",
                                       "title": t, "tags": list(tags)})[0]
            for i, t in enumerate(titles)]


def test_stories_published_at_the_same_instant_join_one_window(fresh, no_dispatch) -> None:
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active")})
    with db.session_scope() as session:
        ids = [a.id for a in stories(session, "One", "Two", "Three", "Four")]
    start = threading.Barrier(len(ids))

    def story_task(article_id: int) -> int:
        with db.session_scope() as session:
            start.wait()
            return alerts.on_published(session, article_id, window_s=60).id

    with ThreadPoolExecutor(len(ids)) as pool:
        windows = set(pool.map(story_task, ids))
    with db.session_scope() as session:
        (edition,) = session.scalars(select(Edition)).all()
        first = session.scalar(select(func.min(Article.created_at)))
        assert windows == {edition.id}
        assert (edition.status, edition.period_key) == ("open", alerts.OPEN_KEY)
        assert edition.requested_at == first
        assert session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.name == events.ALERT_WINDOW_OPENED)) == 1


def test_the_window_slides_from_its_first_story_and_takes_late_commits(fresh,
                                                                      no_dispatch) -> None:
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active")})
    with db.session_scope() as session:
        first, late = stories(session, "First", "Late")
        # "Late" reached us before "First" but its publish committed after: its task runs
        # second, joins the open window and moves its start back.
        session.execute(update(Article).where(Article.id == late.id)
                        .values(created_at=first.created_at - timedelta(seconds=3)))
    with db.session_scope() as session:
        window = alerts.on_published(session, first.id, window_s=60)
        assert alerts.on_published(session, late.id, window_s=60).id == window.id
    with db.session_scope() as session:
        window = session.get(Edition, window.id)
        assert window.requested_at == session.get(Article, late.id).created_at
        assert window.cutoff_at == session.get(Article, first.id).created_at + timedelta(
            seconds=60)
        assert alerts.close_due(session) == []  # not due yet
        # The window's time is up; the next story cannot join it and opens the next one.
        session.execute(update(Edition).where(Edition.id == window.id)
                        .values(cutoff_at=session.get(Article, first.id).created_at))
        (after,) = stories(session, "After")
        following = alerts.on_published(session, after.id, window_s=60)
        assert following.id != window.id
        session.refresh(window)
        assert (window.status, window.period_key) == ("planning", None)
        assert alerts.close_due(session) == []  # closed once only
        assert set(digests.candidate_articles(session, window).topic_ids) == {first.id, late.id}
        assert set(digests.candidate_articles(session, following).topic_ids) == {after.id}


def test_a_story_stamped_after_the_cutoff_never_joins_the_window(fresh, no_dispatch) -> None:
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active")})
    with db.session_scope() as session:
        first, skewed = stories(session, "First", "Skewed")
        window = alerts.on_published(session, first.id, window_s=60)
        # The web process's clock runs ahead of the worker's: the story is stamped after
        # the cutoff although the window is not yet due by this clock.
        skewed.created_at = window.cutoff_at + timedelta(seconds=1)
        session.flush()
        following = alerts.on_published(session, skewed.id, window_s=60)
        session.refresh(window)
        assert following.id != window.id and window.status == "planning"
        assert set(digests.candidate_articles(session, following).topic_ids) == {skewed.id}


def test_no_window_for_a_backfill_or_a_story_nobody_follows(fresh, no_dispatch) -> None:
    add_readers({"syria.now@example.com": ("immediate", ["Syria"], "active")})
    with db.session_scope() as session:
        (old,) = stories(session, "Archive piece")
        old.published_at = utcnow() - timedelta(days=3)
        (elsewhere,) = stories(session, "Elsewhere", tags=("Iran",))
        session.flush()
        assert alerts.on_published(session, old.id, window_s=60) is None
        assert alerts.on_published(session, elsewhere.id, window_s=60) is None
        assert session.scalar(select(func.count()).select_from(Edition)) == 0


# ---------------------------------------------------------------- the email

def alert_context(titles_by_topic: dict[str, list[str]]) -> dict:
    from tests.helpers import article, placeholders

    sections, n = [], 0
    for name, titles in titles_by_topic.items():
        sections.append({"topic": {"slug": name.lower(), "name": name},
                         "articles": [article(n := n + 1, title=t) for t in titles]})
    return {"site_name": "The Levant Ledger", "base_url": "https://news.example",
            **placeholders(), "edition": {"id": 7, "kind": "alert", "frequency": "immediate",
                                          "date_label": "28 November 2026"},
            "archive_url": "https://news.example/editions/7", "article_count": n,
            "sections": sections}


@pytest.mark.parametrize(("titles", "subject"), [
    ({"Syria": ["Aid convoy reaches Idlib"]}, "Aid convoy reaches Idlib"),
    ({"Syria": ["A", "B"], "Jordan": ["C"]}, "3 new stories on Syria and Jordan"),
    ({"Syria": ["A"], "Jordan": ["B"], "Iraq": ["C"]}, "3 new stories on Syria, Jordan and more"),
    ({"Syria": ["Ceasefire " * 20]}, ("Ceasefire " * 8).strip() + "…"),  # cut at a word
])
def test_alert_subject(titles: dict, subject: str) -> None:
    assert rendering.render("alert", alert_context(titles)).subject == subject


def test_alert_body_escapes_and_lists_every_story() -> None:
    email = rendering.render("alert", alert_context(
        {"Syria": ["<b>Idlib</b> & Aleppo", "Second"], "Jordan": ["Third"]}))
    assert "&lt;b&gt;Idlib&lt;/b&gt; &amp; Aleppo" in email.html
    assert "<b>Idlib</b> & Aleppo" in email.text
    for title in ("Second", "Third"):
        assert title in email.text and title in email.html
    assert "You receive this alert because you follow Syria and Jordan" in email.text
