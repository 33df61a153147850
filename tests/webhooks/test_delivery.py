"""Webhook deliveries on both databases, driven in this process (the outbox's doorbell
accepts events without the broker, so the module's worker stays out): each event arrives
once, signed, in order per reader; a receiver that was down gets what it missed, in order;
after the limit a delivery is dead-lettered, and a retry sends it."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select

from newsletter import db, events
from newsletter.models import WebhookDelivery
from newsletter.webhooks import delivery, endpoints, fanout
from tests.webhooks.conftest import settings


def register(url: str, names=events.WEBHOOK_EVENTS) -> tuple[int, str]:
    with db.session_scope() as session:
        endpoint, secret = endpoints.register(session, url, names, "test")
        return endpoint.id, secret


def record(name: str, **payload) -> int:
    with db.session_scope() as session:
        return events.record(session, name, **payload)


def pump() -> delivery.Run:
    """What the worker's task does: fan out, then send what is due."""
    with db.session_scope() as session:
        fanout.fan_out(session)
        session.commit()
        return delivery.send_due(session)


def rows() -> list[WebhookDelivery]:
    with db.session_scope() as session:
        found = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_id)))
        session.expunge_all()
        return found


def pump_until(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    pump()
    while not condition():
        assert time.monotonic() < deadline, [(r.event_name, r.status, r.last_error) for r in rows()]
        time.sleep(0.05)
        pump()


def test_each_event_arrives_once_signed_and_in_order_per_reader(fresh, dispatcher, receiver):
    dispatcher.accept()
    record(events.READER_CONFIRMED, reader_id=99)  # before the endpoint: not sent to it
    _, receiver.secret = register(receiver.url)
    script = [(events.READER_CONFIRMED, 1), (events.READER_CONFIRMED, 2),
              (events.READER_UNSUBSCRIBED, 1), (events.READER_BOUNCED, 2),
              (events.READER_CONFIRMED, 3), (events.READER_UNSUBSCRIBED, 3)]
    ids = [record(name, reader_id=reader) for name, reader in script]
    record(events.EDITION_SENT, edition_id=7)
    record("reader.subscribed", reader_id=4)  # not a webhook event

    run = pump()
    assert run.delivered == 7 and receiver.forged == 0
    assert receiver.types_for("reader_id", 1) == ["reader.confirmed", "reader.unsubscribed"]
    assert receiver.types_for("reader_id", 2) == ["reader.confirmed", "reader.bounced"]
    assert receiver.types_for("reader_id", 3) == ["reader.confirmed", "reader.unsubscribed"]
    assert receiver.types_for("edition_id", 7) == ["edition.sent"]
    assert not receiver.types_for("reader_id", 99) and not receiver.types_for("reader_id", 4)
    # The message id is the outbox event's; nothing but the reader's id names a reader.
    assert {r["id"] for r in receiver.received} >= {f"msg_{i}" for i in ids}
    assert all(set(r["data"]) == {"reader_id"} for r in receiver.received if "reader_id" in r["data"])

    assert pump().delivered == 0  # once: nothing is sent again
    assert len(receiver.received) == receiver.requests == 7
    assert {r.status for r in rows()} == {"delivered"}


def test_a_receiver_that_was_down_gets_what_it_missed_in_order(fresh, dispatcher, receiver):
    dispatcher.accept()
    _, receiver.secret = register(receiver.url)
    receiver.down()  # connection refused
    record(events.READER_CONFIRMED, reader_id=1)
    record(events.READER_UNSUBSCRIBED, reader_id=1)
    record(events.READER_CONFIRMED, reader_id=2)
    run = pump()
    assert run.delivered == 0 and run.failed == 1  # the endpoint is down: one try per run
    first, second, third = rows()
    assert first.attempts == 1 and "ConnectError" in first.last_error
    assert second.attempts == 0  # behind the reader's first: never sent ahead of it
    assert first.next_attempt_at > first.last_attempt_at

    receiver.up()
    receiver.status = 500  # up, but failing
    pump_until(lambda: receiver.requests >= 2)
    assert receiver.received == []
    assert any(r.last_error == "HTTP 500" for r in rows())

    receiver.status = 200
    pump_until(lambda: {r.status for r in rows()} == {"delivered"})
    assert receiver.types_for("reader_id", 1) == ["reader.confirmed", "reader.unsubscribed"]
    assert receiver.types_for("reader_id", 2) == ["reader.confirmed"]
    assert len(receiver.received) == 3 and receiver.forged == 0


def test_dead_letter_after_the_attempts_limit_then_retried(fresh, dispatcher, receiver):
    dispatcher.accept()
    _, receiver.secret = register(receiver.url)
    receiver.status = 500
    with settings(webhook_max_attempts="3"):
        record(events.READER_CONFIRMED, reader_id=1)
        record(events.READER_UNSUBSCRIBED, reader_id=1)
        pump_until(lambda: rows()[0].status == "dead")
        head, behind = rows()
        assert head.attempts == 3 and head.last_error == "HTTP 500"
        # Dead, it no longer holds back the reader's next event.
        receiver.status = 200
        pump_until(lambda: rows()[1].status == "delivered")
        assert receiver.types_for("reader_id", 1) == ["reader.unsubscribed"]
        with db.session_scope() as session:
            delivery.retry(session, head.id)
        pump_until(lambda: rows()[0].status == "delivered")
    assert receiver.types_for("reader_id", 1) == ["reader.unsubscribed", "reader.confirmed"]


def test_dead_letter_after_the_age_limit(fresh, dispatcher, receiver):
    dispatcher.accept()
    _, receiver.secret = register(receiver.url)
    receiver.down()
    with settings(webhook_max_age_hours="0.0001"):  # 0.36 s
        record(events.ARTICLE_WITHDRAWN, article_id=5, url="https://news.example/a")
        time.sleep(0.5)
        run = pump()
    assert run.dead == 1
    (row,) = rows()
    assert row.status == "dead" and row.attempts == 1 and row.order_key == "article:5"


def test_a_deleted_endpoint_is_sent_nothing_more(fresh, dispatcher, receiver):
    dispatcher.accept()
    endpoint_id, receiver.secret = register(receiver.url, [events.EDITION_SENT])
    record(events.EDITION_SENT, edition_id=1)
    record(events.READER_CONFIRMED, reader_id=1)  # not asked for
    assert pump().delivered == 1
    with db.session_scope() as session:
        endpoints.remove(session, endpoint_id)
    record(events.EDITION_SENT, edition_id=2)
    assert pump().delivered == 0 and rows() == []
    assert [r["data"] for r in receiver.received] == [{"edition_id": 1}]


def test_delivered_rows_are_kept_a_week(fresh, dispatcher, receiver):
    dispatcher.accept()
    _, receiver.secret = register(receiver.url)
    for reader in (1, 2):
        record(events.READER_CONFIRMED, reader_id=reader)
    pump()
    with db.session_scope() as session:
        first = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).first()
        first.delivered_at -= delivery.KEEP_DELIVERED + timedelta(minutes=1)
    with db.session_scope() as session:
        assert delivery.prune(session) == 1
    assert [r.payload for r in rows()] == [{"reader_id": 2}]
