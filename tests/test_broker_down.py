"""With the broker down, readers and editors still get answers, promptly, and nothing is lost:
the first failed dispatch makes later requests leave their events to the relay at once."""

from __future__ import annotations

import base64
import json
import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db, events
from newsletter.mail.capture import free_port
from newsletter.models import OutboxEvent, Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, configure, offer_topics, post_subscribe


def test_requests_do_not_wait_on_a_dead_broker(tmp_path) -> None:
    dead = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"  # nothing listens there
    configure(tmp_path, f"sqlite:///{tmp_path / 'down.db'}", dead, "smtp://127.0.0.1:9")
    db.upgrade()
    client = TestClient(create_app())
    assert client.post("/api/articles", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                       json={"url": "https://news.example/a/1", "title": "Seed",
                             "tags": ["Syria"]}).status_code == 201  # pays the one timeout
    with db.session_scope() as session:  # what the editors offer readers
        offer_topics(session, "Syria")
    timings = []
    for n in range(3):
        started = time.monotonic()
        r = post_subscribe(client, email=f"r{n}@example.com", topics=["syria"],
                           frequency="daily", consent="yes")
        timings.append(time.monotonic() - started)
        assert r.status_code == 200 and "Check your inbox" in r.text
    assert max(timings) < 1.0, timings
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Reader)) == 3
        waiting = session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.dispatched_at.is_(None)))
        assert waiting == 4  # the article's event and three confirmations, for the relay
    events.set_dispatcher(None)  # the next tests have a live broker again


def test_events_handed_to_the_background_wait_for_the_relay_when_the_broker_is_down(
        tmp_path) -> None:
    """The web server's way (its lifespan turns background dispatch on): the answer comes at
    once, the dispatch thread fails to reach the broker, and the rows wait for the relay."""
    dead = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    configure(tmp_path, f"sqlite:///{tmp_path / 'down.db'}", dead, "smtp://127.0.0.1:9")
    db.upgrade()
    events.set_dispatcher(None)
    with db.session_scope() as session:  # what the editors offer readers
        offer_topics(session, "Syria")
    with TestClient(create_app()) as client:
        timings = []
        for n in range(3):
            started = time.monotonic()
            r = post_subscribe(client, email=f"bg{n}@example.com", topics=["syria"],
                               frequency="daily", consent="yes") if n else client.post(
                "/api/articles", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                json={"url": "https://news.example/a/1", "title": "Seed", "tags": ["Syria"]})
            timings.append(time.monotonic() - started)
            assert r.status_code in (200, 201), r.text
        assert max(timings) < 1.0, timings  # nobody waited on the dead broker's connect
        assert "outbox-dispatch" in {t.name for t in threading.enumerate()}
        assert events.flush_background(timeout=60)
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Reader)) == 2
        waiting = session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.dispatched_at.is_(None)))
    assert waiting == 3  # the article's event and two confirmations, for the relay
    events.set_dispatcher(None)


def _commit_events(count: int) -> list[int]:
    with db.session_scope() as session:
        ids = [events.record(session, events.READER_SUBSCRIBED, reader_id=900 + n)
               for n in range(count)]
        session.commit()  # dispatched inline after the commit, as workers and the CLI do
    return ids


def _undispatched(ids: list[int]) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.id.in_(ids), OutboxEvent.dispatched_at.is_(None)))


def test_events_committed_together_reach_redis_as_one_batch_or_wait_for_the_relay(
        tmp_path) -> None:
    """workers.dispatch publishes several events in one pipelined write; they count as
    dispatched only once it has reached the broker."""
    import redis

    from tests.conftest import _fresh_redis

    broker = _fresh_redis()
    configure(tmp_path, f"sqlite:///{tmp_path / 'batch.db'}", broker, "smtp://127.0.0.1:9")
    db.upgrade()
    queue = redis.Redis.from_url(broker)
    ids = _commit_events(5)
    assert _undispatched(ids) == 0
    # The five sign-ups are one task naming the five readers (nothing else consumes it).
    messages = [json.loads(m) for m in queue.lrange("newsletter", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["newsletter.send_confirmations"]
    args, _kwargs, _embed = json.loads(base64.b64decode(messages[0]["body"]))
    assert args == [[900 + n for n in range(5)]]

    dead = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    configure(tmp_path, f"sqlite:///{tmp_path / 'batch.db'}", dead, "smtp://127.0.0.1:9")
    ids = _commit_events(5)
    assert _undispatched(ids) == 5  # not one marked: the batch never left
    queue.flushdb()
    events.set_dispatcher(None)
