"""subscribe() on both databases: SQLite runs its statements one by one, PostgreSQL runs
them as one (subscriptions._subscribe_in_one); what they write must be the same."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, update

from newsletter import db, events, tokens
from newsletter.models import (
    ConsentEvent,
    OutboxEvent,
    PendingChoice,
    Reader,
    ReaderTopic,
    Topic,
)
from newsletter.readers import subscriptions
from tests.conftest import offer_topics


@pytest.fixture
def topics(fresh) -> dict[str, int]:
    with db.session_scope() as session:
        offered = offer_topics(session, "Syria", "Russia", "Jordan")
        return {t.slug: t.id for t in offered}


def subscribe(email: str, slugs: list[str], frequency: str = "weekly") -> int:
    with db.session_scope() as session:
        reader_id = subscriptions.subscribe(session, email, slugs, frequency,
                                            consent_given=True, source="form",
                                            ip="192.0.2.7", user_agent="Firefox " * 100)
        pending = list(session.info.get(events._PENDING, []))
        session.commit()
    return reader_id, pending


def state(email: str) -> dict:
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == email))
        if reader is None:
            return {}
        return {
            "status": reader.status, "frequency": reader.frequency, "source": reader.source,
            "topics": sorted(session.scalars(select(Topic.slug).join(
                ReaderTopic, ReaderTopic.topic_id == Topic.id).where(
                ReaderTopic.reader_id == reader.id))),
            "consent": [(c.action, c.source, c.ip, len(c.user_agent or ""), c.details)
                        for c in session.scalars(select(ConsentEvent).where(
                            ConsentEvent.reader_id == reader.id).order_by(ConsentEvent.id))],
            "events": [(e.name, e.payload) for e in session.scalars(select(OutboxEvent).where(
                OutboxEvent.name == events.READER_SUBSCRIBED).order_by(OutboxEvent.id))
                if e.payload == {"reader_id": reader.id}],
        }


def counts() -> tuple[int, ...]:
    with db.session_scope() as session:
        return tuple(session.scalar(select(func.count()).select_from(m))
                     for m in (Reader, ReaderTopic, ConsentEvent, OutboxEvent))


def test_a_new_reader_is_pending_with_topics_consent_and_one_event(topics) -> None:
    reader_id, pending = subscribe(" Layla@Example.com ", ["Syria", "jordan", "syria"])
    got = state("layla@example.com")
    assert got["status"] == "pending" and got["frequency"] == "weekly"
    assert got["topics"] == ["jordan", "syria"]
    details = {"topics": ["jordan", "syria"], "frequency": "weekly"}
    assert got["consent"] == [("requested", "form", "192.0.2.7", 512, details)]
    assert got["events"] == [(events.READER_SUBSCRIBED, {"reader_id": reader_id})]
    # The event is handed to the dispatcher after commit, with the id it was stored under.
    with db.session_scope() as session:
        stored = session.scalar(select(OutboxEvent.id).where(
            OutboxEvent.name == events.READER_SUBSCRIBED))
    assert pending == [(stored, events.READER_SUBSCRIBED, {"reader_id": reader_id})]


def test_subscribing_again_while_pending_waits_for_the_confirmation(topics) -> None:
    # Anybody can type an address: the second choice waits beside the first, on both
    # databases alike, and the confirmation applies it.
    first, _ = subscribe("omar@example.com", ["syria", "russia"])
    again, _ = subscribe("omar@example.com", ["russia", "jordan"], "daily")
    assert again == first
    got = state("omar@example.com")
    assert got["topics"] == ["russia", "syria"] and got["frequency"] == "weekly"
    assert [c[0] for c in got["consent"]] == ["requested", "requested"]
    assert len(got["events"]) == 2
    with db.session_scope() as session:
        choice = session.get(PendingChoice, first)
        assert (choice.topics, choice.frequency) == (["jordan", "russia"], "daily")
        subscriptions.confirm(session, tokens.make("confirm", first, "omar@example.com"))
    got = state("omar@example.com")
    assert got["topics"] == ["jordan", "russia"] and got["frequency"] == "daily"
    with db.session_scope() as session:
        assert session.get(PendingChoice, first) is None


def test_an_active_reader_is_left_as_is(topics) -> None:
    reader_id, _ = subscribe("nadia@example.com", ["syria"])
    with db.session_scope() as session:
        session.get(Reader, reader_id).status = "active"
    before = state("nadia@example.com")
    again, pending = subscribe("nadia@example.com", ["russia"], "daily")
    assert again == reader_id and pending == []
    assert state("nadia@example.com") == {**before, "status": "active"}


@pytest.mark.parametrize("slugs, message", [
    (["atlantis"], "Unknown topic: atlantis"),
    (["syria", "atlantis", "mordor"], "Unknown topic: atlantis, mordor"),
    ([" ", ""], "Choose at least one topic"),
])
def test_unknown_topics_write_nothing(topics, slugs, message) -> None:
    subscribe("karim@example.com", ["syria"])  # pending, with a topic, before the bad form
    before, reader = counts(), state("karim@example.com")
    with pytest.raises(subscriptions.SubscriptionError, match=message) as caught:
        subscribe("karim@example.com", slugs, "daily")
    assert caught.value.field == "topics"
    assert counts() == before and state("karim@example.com") == reader
    with pytest.raises(subscriptions.SubscriptionError):
        subscribe("new@example.com", slugs)
    assert counts() == before


def confirmations_to(backend, emails: set[str], timeout: float = 60) -> None:
    """Wait for the sink to hold an email to each of ``emails`` (only those: a confirmation
    from an earlier test may still land while this one runs)."""
    deadline = time.monotonic() + timeout
    while not {m["To"] for m in backend.smtp.messages()} >= emails:
        assert time.monotonic() < deadline, f"no email yet to {emails}"
        time.sleep(0.05)


def test_a_burst_of_sign_ups_is_one_task_and_each_reader_gets_their_confirmation(
        topics, backend) -> None:
    # Committed together, as the web's outbox thread publishes a burst: one
    # send_confirmations task; the refused address does not cost the others their email.
    emails = ["amal@example.com", "bounce-gone@example.com", "samir@example.com"]
    with db.session_scope() as session:
        for email in emails:
            subscriptions.subscribe(session, email, ["syria"], "weekly", consent_given=True)
    wanted = {"amal@example.com", "samir@example.com"}
    confirmations_to(backend, wanted)
    time.sleep(0.5)  # and nothing more for them
    got = [m for m in backend.smtp.messages() if m["To"] in {*emails}]
    assert sorted(m["To"] for m in got) == sorted(wanted)
    assert all("confirm" in m["Subject"].lower() for m in got)


def test_confirmations_deferred_by_the_relay_are_handed_back_to_retry(topics, fresh) -> None:
    from newsletter.mail.mailer import SmtpConfig, SmtpTransport
    from newsletter.readers import notices
    from tests.test_mailer import Recorder, relay_server

    ids = {e: subscribe(e, ["syria"])[0]
           for e in ("first@example.com", "later@example.com", "bounce@example.com")}
    confirmations_to(fresh, set(ids))  # the worker's own; then as if none had gone out
    with db.session_scope() as session:
        session.execute(update(Reader).values(confirmation_sent_at=None))
    handler = Recorder(pipelining=True)
    handler.rcpt_replies["later@example.com"] = "451 4.7.1 greylisted, try again later"
    handler.rcpt_replies["bounce@example.com"] = "550 5.1.1 no such user"
    with relay_server(handler) as relay, SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        later = notices.send_confirmations(list(ids.values()), t).later
    assert later == [ids["later@example.com"]]
    assert [m[1] for m in handler.messages] == [["first@example.com"]]
    with db.session_scope() as session:
        sent_at = {r.email: r.confirmation_sent_at for r in session.scalars(select(Reader))}
    # Unstamped: the retry sends it; the refused one keeps its stamp (no daily resend).
    assert sent_at["later@example.com"] is None
    assert sent_at["first@example.com"] and sent_at["bounce@example.com"]
