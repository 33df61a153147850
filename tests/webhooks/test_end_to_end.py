"""Through the real app, the real relay and a real Celery worker (each backend): a reader
confirms → reader.confirmed reaches the receiver on loopback, signed; while the outbox's
doorbell is down the event waits as a row, and `newsletter relay` sends it on."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from newsletter import db
from newsletter.models import Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, post_subscribe
from tests.helpers import invoke, text_part

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait_for(condition, backend, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, dump_log(backend)
        time.sleep(0.1)


def test_a_reader_confirms_and_the_receiver_is_told(fresh, dispatcher, receiver):
    backend = fresh
    client = TestClient(create_app())
    assert client.post("/api/topics", headers=ADMIN, json={"name": "Syria"}).status_code == 201
    r = client.post("/api/webhooks", headers=ADMIN, json={
        "url": receiver.url, "events": ["reader.confirmed", "reader.unsubscribed"]})
    receiver.secret = r.json()["secret"]
    r = post_subscribe(client, email="rana@example.com", topics=["syria"],
                       frequency="weekly", consent="yes")
    assert r.status_code == 200
    (message,) = backend.smtp.wait_for(1)
    token = re.search(r"/confirm/([\w.\-]+)", text_part(message)).group(1)

    dispatcher.drop()  # the broker's doorbell fails: the event stays an undispatched row
    assert client.post(f"/confirm/{token}").status_code == 200
    time.sleep(2)
    assert receiver.requests == 0
    dispatcher.restore()
    assert "dispatched 1 outbox events" in invoke("relay")

    wait_for(lambda: receiver.received, backend)
    with db.session_scope() as session:
        reader_id = session.query(Reader.id).filter_by(email="rana@example.com").scalar()
    (got,) = receiver.received
    assert got["type"] == "reader.confirmed" and got["data"] == {"reader_id": reader_id}
    assert receiver.forged == 0

    # Unsubscribing from the welcome email: its event goes straight through the doorbell.
    welcome = backend.smtp.wait_for(2)[1]
    unsubscribe = re.search(r"/unsubscribe/([\w.\-]+)", text_part(welcome)).group(1)
    assert client.post(f"/unsubscribe/{unsubscribe}",
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    wait_for(lambda: len(receiver.received) == 2, backend)
    assert receiver.types_for("reader_id", reader_id) == ["reader.confirmed",
                                                          "reader.unsubscribed"]
    time.sleep(1)
    assert receiver.requests == 2  # once each
