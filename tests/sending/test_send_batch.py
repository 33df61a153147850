"""Sending a batch (newsletter/sending/batch.py) through an SMTP relay that refuses some
recipients: the edition's report splits failures and skips and counts unsubscribes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from newsletter import db, tokens
from newsletter.cli import app as cli
from newsletter.editions import deliveries, planning, reports
from newsletter.editions import requests as editions
from newsletter.mail import mailer
from newsletter.mail.capture import free_port
from newsletter.models import Delivery, Reader, utcnow
from newsletter.readers import subscriptions
from newsletter.sending import batch
from tests.helpers import add_readers, invoke, publish, runner, without_topics

# ---------------------------------------------------------------- what an edition did

class PickyRelay:
    """An SMTP server that refuses some recipients: perm… for good, temp… for now."""

    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("perm"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("temp"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def picky_relay():
    relay = PickyRelay()
    port = free_port("127.0.0.1")
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    transport = mailer.SmtpTransport(mailer.SmtpConfig.from_url(f"smtp://127.0.0.1:{port}"))
    yield relay, transport
    transport.close()
    controller.stop()


def test_report_splits_failures_and_skips_and_counts_unsubscribes(fresh, picky_relay, dispatcher) -> None:
    relay, transport = picky_relay
    publish("Aid reaches Idlib", ["Syria"])
    publish("Tehran archive", ["Iran"], published_at=(utcnow() - timedelta(days=40)).isoformat())
    ids = add_readers({"ok@example.com": ["syria"], "perm@example.com": ["syria"],
                       "temp@example.com": ["syria"], "gone@example.com": ["syria"],
                       "quiet@example.com": ["iran"]})
    # The worker stays out: plan and send here, with the picky relay.
    with dispatcher.drop():
        with db.session_scope() as session:
            edition_id = editions.request(session, "weekly", source="test").id
        with db.session_scope() as session:
            planning.plan(session, edition_id)
        with db.session_scope() as session:
            # temp@ has been retried before: this attempt is its last.
            session.execute(update(Delivery).where(Delivery.reader_id == ids["temp@example.com"])
                            .values(attempts=deliveries.MAX_ATTEMPTS - 1))
            token = tokens.make("unsubscribe", ids["gone@example.com"], "gone@example.com",
                                e=edition_id)
            subscriptions.unsubscribe(session, token, method="one-click")
        with db.session_scope() as session:
            delivery_ids = list(session.scalars(select(Delivery.id)))
            batch.send_batch(session, delivery_ids, transport)

    assert relay.accepted == ["ok@example.com"]
    with db.session_scope() as session:
        report = reports.report(session, edition_id)
        errors = dict(session.execute(select(Reader.email, Delivery.last_error)
                                      .join(Delivery, Delivery.reader_id == Reader.id)).all())
    assert errors["temp@example.com"].startswith("gave up after 5 attempts: 451")
    assert errors["perm@example.com"].startswith("550")
    assert report["status"] == "done"
    assert report["counts"] == {
        "planned": 4, "sent": 1, "failed": 2, "failed_temporary": 1, "failed_permanent": 1,
        "skipped": 2, "skipped_empty": 1, "skipped_suppressed": 1, "unsubscribed": 1,
        "queued": 0, "dead_letter": 1, "reclaimed": 0}
    assert without_topics(report["plan"]) == {"readers": 5, "emails": 4,
                                              "distinct_digests": 1, "articles": 1}
    assert report["started_at"] <= report["finished_at"]

    out = invoke("stats", str(edition_id))
    assert "1 temporary (gave up), 1 permanent" in out
    assert "1 nothing new, 1 suppressed" in out and "unsubscribed" in out
    assert '"failed_permanent": 1' in invoke("stats", str(edition_id), "--json")
    assert runner.invoke(cli, ["stats", "99999"]).exit_code == 1


