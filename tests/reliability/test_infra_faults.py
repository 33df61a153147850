"""The broker and the database fail under a running edition; nothing is lost or doubled."""

from __future__ import annotations

import threading
import time

import psycopg
from sqlalchemy import select

from newsletter import db
from newsletter.config import get_settings
from newsletter.models import OutboxEvent
from tests.reliability.conftest import AUTH, BATCH, copies_by_reader

READERS = [f"reader{i:02d}@example.com" for i in range(3 * BATCH)]


def test_redis_restarted_mid_edition_loses_no_reader(redis_rig) -> None:
    rig = redis_rig
    rig.seed(READERS)
    rig.script.hold("rcpt", BATCH + 2)  # mid second batch; the third is in Redis
    rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    rig.redis.stop()  # no persistence: the queued tasks are gone
    rig.redis.start()
    rig.script.release.set()
    # The running batch finishes and records; the lost one is re-enqueued after the lease.
    report = rig.settle(edition_id, lease=3)
    assert copies_by_reader(rig.script, READERS) == {e: 1 for e in READERS}
    assert report["counts"]["sent"] == len(READERS)


def test_broker_down_while_readers_subscribe_and_editors_publish(redis_rig) -> None:
    rig = redis_rig
    rig.redis.stop()
    client = rig.client()
    r = client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/while-down", "title": "Published while down",
        "summary": "s", "tags": ["Syria"]})
    assert r.status_code == 201, r.text
    assert client.post("/api/topics", headers=AUTH, json={"name": "Syria"}).status_code in (200, 201)
    from newsletter.models import utcnow

    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": e, "topics": ["syria"], "frequency": "daily",
         "consented_at": utcnow().isoformat()} for e in READERS])
    assert r.status_code == 200, r.text
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "daily"})
    assert r.status_code == 202, r.text
    edition_id = r.json()["id"]
    with db.session_scope() as session:
        waiting = session.scalars(select(OutboxEvent.name).where(
            OutboxEvent.dispatched_at.is_(None))).all()
    assert "edition.requested" in waiting

    rig.redis.start()
    rig.start_worker(concurrency=1)
    time.sleep(5.5)  # the relay takes events older than 5 s (after-commit may race it)
    report = rig.settle(edition_id)
    assert copies_by_reader(rig.script, READERS) == {e: 1 for e in READERS}
    assert report["counts"]["sent"] == len(READERS)


def test_postgres_connection_dropped_mid_batch(redis_rig) -> None:
    rig = redis_rig
    rig.seed(READERS)
    rig.script.hold("rcpt", BATCH + 2)
    rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    url = get_settings().db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        db.dispose_engines()  # ours too: this process's pool would hold dead connections
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    threading.Timer(0.2, rig.script.release.set).start()
    report = rig.settle(edition_id, lease=3)
    copies = copies_by_reader(rig.script, READERS)
    # The batch notices at its next query: it records what it sent on a new connection.
    assert copies == {e: 1 for e in READERS}, copies
    assert report["counts"]["sent"] == len(READERS)
