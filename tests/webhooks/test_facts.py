"""Each webhook event is recorded where its fact is committed, in the same transaction,
once per change, and waits for the fan-out (webhook_pending); no payload names a reader by
anything but id. (edition.paused: tests/sending/test_batch.py.)"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, events, tokens
from newsletter.editions import deliveries, withdrawal
from newsletter.models import Edition, OutboxEvent, Reader, WebhookPending
from newsletter.readers import bounces, subscriptions
from newsletter.web.app import create_app
from tests.conftest import offer_topics
from tests.helpers import publish


def recorded(name: str) -> list[dict]:
    """The payloads of ``name`` events, each checked to wait for the fan-out."""
    with db.session_scope() as session:
        rows = session.execute(select(OutboxEvent.id, OutboxEvent.payload)
                               .where(OutboxEvent.name == name).order_by(OutboxEvent.id)).all()
        pending = set(session.scalars(select(WebhookPending.event_id)))
    assert all(event_id in pending for event_id, _ in rows)
    return [payload for _, payload in rows]


def new_reader(email: str) -> int:
    with db.session_scope() as session:
        offer_topics(session, "Syria")
        return subscriptions.subscribe(session, email, ["syria"], "weekly",
                                       consent_given=True, source="form")


def test_reader_events_through_the_app(fresh, dispatcher):
    dispatcher.accept()
    reader_id = new_reader("rana@example.com")
    client = TestClient(create_app())
    confirm = tokens.make("confirm", reader_id, "rana@example.com")
    assert client.post(f"/confirm/{confirm}").status_code == 200
    assert client.post(f"/confirm/{confirm}").status_code == 200  # again: no second event
    assert recorded(events.READER_CONFIRMED) == [{"reader_id": reader_id}]
    unsubscribe = tokens.make("unsubscribe", reader_id, "rana@example.com")
    for _ in range(2):
        r = client.post(f"/unsubscribe/{unsubscribe}",
                        data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
    assert recorded(events.READER_UNSUBSCRIBED) == [
        {"reader_id": reader_id, "method": "one-click", "edition_id": None}]
    assert "rana" not in str(recorded(events.READER_UNSUBSCRIBED))


def test_a_bounce_that_suppresses_a_reader(fresh, dispatcher):
    dispatcher.accept()
    reader_id = new_reader("gone@example.com")
    with db.session_scope() as session:
        reader = session.get(Reader, reader_id)
        assert bounces.suppress_reader(session, reader, "bounce", None,
                                       {"diagnostic": "550 gone@example.com unknown"})
        assert not bounces.suppress_reader(session, reader, "bounce", None, {})
    assert recorded(events.READER_BOUNCED) == [
        {"reader_id": reader_id, "kind": "bounce", "edition_id": None}]


def test_an_article_withdrawn(fresh, dispatcher):
    dispatcher.accept()
    article_id = publish("Aid reaches Idlib", ["Syria"])
    for _ in range(2):
        with db.session_scope() as session:
            withdrawal.unpublish(session, article_id)
    (payload,) = recorded(events.ARTICLE_WITHDRAWN)
    assert payload["article_id"] == article_id and payload["url"].startswith("https://")


def test_an_edition_sent_once_nothing_is_left(fresh, dispatcher):
    dispatcher.accept()
    with db.session_scope() as session:
        edition = Edition(frequency="weekly", status="sending")
        session.add(edition)
        session.flush()
        edition_id = edition.id
    with db.session_scope() as session:
        assert deliveries.finish_if_complete(session, edition_id)
        assert not deliveries.finish_if_complete(session, edition_id)
    assert recorded(events.EDITION_SENT) == [{"edition_id": edition_id}]
