"""The send pipeline's behaviours, batch by batch: a real relay on loopback (aiosmtpd),
SQLite and PostgreSQL, the real planner; the worker is kept out so each test sends its
batch itself and sees what it did."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from newsletter import db, events
from newsletter.editions import planning
from newsletter.editions import requests as editions
from newsletter.mail import mailer
from newsletter.mail.capture import free_port
from newsletter.models import Delivery, Edition, OutboxEvent, Reader, utcnow
from newsletter.newsroom import articles
from newsletter.sending import batch
from newsletter.sending.verdicts import SYSTEMIC_RUN
from newsletter.states import OPEN, DeliveryStatus, EditionStatus
from tests.conftest import topics_for, wait_idle


class Relay:
    """Accepts every recipient but those starting "temp" (451, try later) and "gone" (550
    5.1.1, no such mailbox); records each message it took, by recipient."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("temp"):
            return "451 4.3.0 try again later"
        if address.startswith("gone"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def relay(fresh) -> Iterator[tuple[Relay, str]]:
    handler = Relay()
    port = free_port("127.0.0.1")
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    # The worker stays out: the test sends the batch itself.
    events.set_dispatcher(lambda *_: False)
    try:
        yield handler, f"smtp://127.0.0.1:{port}"
    finally:
        events.set_dispatcher(None)
        controller.stop()


def transport(url: str) -> mailer.SmtpTransport:
    return mailer.SmtpTransport(mailer.SmtpConfig.from_url(url))


def planned(emails: list[str]) -> tuple[int, list[int]]:
    """An edition planned for readers of Syria at these addresses: (its id, delivery ids)."""
    with db.session_scope() as session:
        articles.publish(session, {"url": "https://news.example/a/aid", "title": "Aid reaches "
                                   "Idlib", "summary": "Convoys crossed.", "tags": ["Syria"]})
    with db.session_scope() as session:
        syria = topics_for(session, ["syria"])[0]
        for email in emails:
            session.add(Reader(email=email, status="active", frequency="weekly", source="test",
                               confirmed_at=utcnow(), topics=[syria]))
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="test").id
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    with db.session_scope() as session:
        return edition_id, list(session.scalars(select(Delivery.id).order_by(Delivery.id)))


def deliveries() -> dict[str, tuple[str, int, str | None]]:
    """Each reader's delivery: (status, attempts, last error)."""
    with db.session_scope() as session:
        return {email: (status, attempts, error) for email, status, attempts, error in
                session.execute(select(Reader.email, Delivery.status, Delivery.attempts,
                                       Delivery.last_error)
                                .join(Delivery, Delivery.reader_id == Reader.id))}


def queued_events() -> int:
    with db.session_scope() as session:
        return len(session.scalars(select(OutboxEvent.id).where(
            OutboxEvent.name == events.DELIVERIES_QUEUED)).all())


def test_a_run_of_temporary_failures_pauses_and_gives_the_batch_back_unspent(relay) -> None:
    handler, url = relay
    edition_id, ids = planned([f"temp{i}@example.com" for i in range(SYSTEMIC_RUN + 2)])
    before = queued_events()
    with db.session_scope() as session, transport(url) as smtp:
        counts = batch.send_batch(session, ids, smtp)

    assert counts == {"sent": 0, "failed": 0, "retry": 0, "suppressed": 0,
                      "released": SYSTEMIC_RUN + 2}
    assert handler.accepted == []
    # The relay's failures, not the readers': every delivery queued with its attempt unspent,
    # and none handed to a worker while the edition is paused.
    assert set(deliveries().values()) == {(DeliveryStatus.QUEUED, 0, None)}
    assert queued_events() == before
    with db.session_scope() as session:
        edition = session.get(Edition, edition_id)
        assert edition.status == EditionStatus.PAUSED
        assert edition.error.startswith(f"{SYSTEMIC_RUN} temporary SMTP failures in a row, "
                                        "last: 451")
        # Told to webhooks, without the reason (an SMTP reply can quote an address).
        assert session.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.name == events.EDITION_PAUSED)).all() == [{"edition_id": edition_id}]
    # Nothing of a paused edition is claimed.
    with db.session_scope() as session, transport(url) as smtp:
        assert batch.send_batch(session, ids, smtp)["released"] == 0
    assert set(deliveries().values()) == {(DeliveryStatus.QUEUED, 0, None)}


def test_fewer_temporary_failures_than_a_run_are_the_readers_own(relay) -> None:
    handler, url = relay
    temporary = [f"temp{i}@example.com" for i in range(SYSTEMIC_RUN - 1)]
    edition_id, ids = planned([*temporary, "gone@example.com"])
    with db.session_scope() as session, transport(url) as smtp:
        counts = batch.send_batch(session, ids, smtp)
    assert counts["retry"] == SYSTEMIC_RUN - 1 and counts["failed"] == 1
    got = deliveries()
    for email in temporary:
        assert got[email][:2] == (DeliveryStatus.RETRY, 1)
    assert got["gone@example.com"][:2] == (DeliveryStatus.FAILED, 1)
    with db.session_scope() as session:
        assert session.get(Edition, edition_id).status == EditionStatus.SENDING
        # A 5.1.1 at RCPT: that mailbox does not exist, so it is mailed no more.
        gone = session.scalars(select(Reader).where(Reader.email == "gone@example.com")).one()
        assert gone.status == "unsubscribed"


def test_an_unbuildable_content_fails_only_its_deliveries(relay) -> None:
    handler, url = relay
    edition_id, ids = planned(["amal@example.com", "bilal@example.com", "carla@example.com"])
    with db.session_scope() as session:  # two deliveries whose digest cannot be made
        session.execute(update(Delivery).where(Delivery.reader_id.in_(
            select(Reader.id).where(Reader.email != "amal@example.com")))
            .values(content_key="0" * 32))
    with db.session_scope() as session, transport(url) as smtp:
        counts = batch.send_batch(session, ids, smtp)

    assert counts == {"sent": 1, "failed": 2, "retry": 0, "suppressed": 0, "released": 0}
    assert handler.accepted == ["amal@example.com"]
    got = deliveries()
    for email in ("bilal@example.com", "carla@example.com"):
        status, _, error = got[email]
        assert status == DeliveryStatus.FAILED
        assert error.startswith(f"{batch.UNBUILDABLE} (rendering its digest)")
    with db.session_scope() as session:
        assert session.get(Edition, edition_id).status == EditionStatus.DONE


def test_a_batch_enqueued_twice_is_sent_once(fresh) -> None:
    # Through the broker to the real worker (two processes), as a redelivered task would.
    readers = [f"reader{i}@example.com" for i in range(3 * batch.RECORD_EVERY)]
    events.set_dispatcher(lambda *_: False)
    try:
        edition_id, ids = planned(readers)
    finally:
        events.set_dispatcher(None)
    seen = fresh.worker_log.stat().st_size
    with db.session_scope() as session:
        for _ in range(2):
            events.record(session, events.DELIVERIES_QUEUED, edition_id=edition_id,
                          delivery_ids=ids)
    deadline = time.monotonic() + 90
    while deliveries_left(edition_id):
        assert time.monotonic() < deadline, deliveries()
        time.sleep(0.1)
    wait_idle()  # the second task too has run (and claimed nothing)

    with fresh.worker_log.open("rb") as log:
        log.seek(seen)
        ran = [line for line in log.read().decode().splitlines()
               if "Task newsletter.send_batch[" in line and "succeeded" in line]
    assert len(ran) >= 2, ran

    assert Counter(r.rcpt_tos[0] for r in fresh.smtp.received) == Counter(readers)
    assert {status for status, _, _ in deliveries().values()} == {DeliveryStatus.SENT}
    with db.session_scope() as session:
        assert session.get(Edition, edition_id).status == EditionStatus.DONE


def deliveries_left(edition_id: int) -> int:
    with db.session_scope() as session:
        return len(session.scalars(select(Delivery.id).where(
            Delivery.edition_id == edition_id, Delivery.status.in_(OPEN))).all())
