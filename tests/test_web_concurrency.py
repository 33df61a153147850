"""Many readers subscribing at once, against the real app under uvicorn.

The web process dispatches its outbox events from a thread of its own, after answering;
each reader must still get their confirmation. A request's session used to take a second
pooled connection for the outbox's after-commit step while still holding its first: with
40 request threads and a pool of 10, every thread held one and waited for another until the
pool timed out (the subscribe benchmark found it: 50 clients, nothing answered for 30 s).
Each subscription must be answered and stored.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import func, select, update

from newsletter import db, events
from newsletter.models import OutboxEvent, Reader
from tests.conftest import live_web, offer_topics

CLIENTS = 60  # more than the 40 request threads and the pool's 10 connections


@pytest.fixture
def web(fresh, tmp_path):
    log = tmp_path / "web.log"
    # The anti-abuse limits would refuse 60 sign-ups from one address in a second.
    with live_web(log, NEWSLETTER_SUBSCRIBE_RATE_LIMIT="", NEWSLETTER_FORM_MIN_SECONDS="0") as base:
        yield base, log


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"], indirect=True)
def test_sixty_readers_subscribing_at_once_are_all_answered_and_stored(backend, web) -> None:
    base, log = web
    # Each reader's own form: a form token signs up once.
    tokens = [httpx.get(f"{base}/subscribe").text.split(
        'name="form_token" value="', 1)[1].split('"', 1)[0] for _ in range(CLIENTS)]

    async def one(i: int) -> tuple[int, float]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            started = time.perf_counter()
            r = await client.post("/subscribe", data={
                "form_token": tokens[i], "email": f"crowd{i}@example.org",
                "topics": ["syria"], "frequency": "weekly", "consent": "on"})
            return r.status_code, time.perf_counter() - started

    async def all_at_once() -> list[tuple[int, float]]:
        return await asyncio.gather(*(one(i) for i in range(CLIENTS)))

    with db.session_scope() as session:
        offer_topics(session, "Syria")
    results = asyncio.run(all_at_once())
    statuses = [s for s, _ in results]
    slowest = max(t for _, t in results)
    assert statuses == [200] * CLIENTS, (statuses, log.read_text()[-3000:])
    # The pool's timeout is 30 s: a request that waited on it would show here.
    assert slowest < 20, f"slowest answer {slowest:.1f} s"
    with db.session_scope() as session:
        stored = session.scalar(select(func.count()).select_from(Reader)
                                .where(Reader.email.like("crowd%@example.org")))
    assert stored == CLIENTS
    # The answers went out before the events reached the broker (the web process hands them
    # to a thread of its own): every reader still gets a confirmation, every event is marked.
    confirmations = backend.smtp.wait_for(CLIENTS)
    assert sorted(str(m["To"]) for m in confirmations) == \
        sorted(f"crowd{i}@example.org" for i in range(CLIENTS))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            undispatched = session.scalar(select(func.count()).select_from(OutboxEvent)
                                          .where(OutboxEvent.dispatched_at.is_(None)))
        if undispatched == 0:
            break
        time.sleep(0.1)
    assert undispatched == 0


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"], indirect=True)
def test_subscribing_again_keeps_the_new_choice_of_a_pending_reader_aside(backend, fresh) -> None:
    """subscribe() is an upsert on the address: a pending or unsubscribed reader's new topics
    and frequency wait beside theirs until confirmed (one more consent entry, one more
    confirmation); an active one is left exactly as it was."""
    from newsletter.models import ConsentEvent, PendingChoice
    from newsletter.readers import subscriptions

    events.set_dispatcher(lambda *_: True)  # no worker needed: only the rows are checked
    try:
        with db.session_scope() as session:
            offer_topics(session, *(s.title() for s in ("syria", "jordan", "iraq")))
        with db.session_scope() as session:
            first = subscriptions.subscribe(session, "again@example.org", ["syria", "jordan"],
                                            "weekly", consent_given=True)
            calm = subscriptions.subscribe(session, "calm@example.org", ["syria"], "weekly",
                                           consent_given=True)
            session.execute(update(Reader).where(Reader.id == calm).values(status="active"))
        with db.session_scope() as session:
            again = subscriptions.subscribe(session, "Again@Example.org ", ["iraq", "jordan"],
                                            "daily", consent_given=True)
            still = subscriptions.subscribe(session, "calm@example.org", ["iraq"], "daily",
                                            consent_given=True)
        assert (again, still) == (first, calm)
        with db.session_scope() as session:
            again_reader, calm_reader = session.get(Reader, first), session.get(Reader, calm)
            assert (again_reader.status, again_reader.frequency) == ("pending", "weekly")
            assert sorted(t.slug for t in again_reader.topics) == ["jordan", "syria"]
            choice = session.get(PendingChoice, first)
            assert (choice.topics, choice.frequency) == (["iraq", "jordan"], "daily")
            assert session.get(PendingChoice, calm) is None
            assert (calm_reader.status, calm_reader.frequency) == ("active", "weekly")
            assert [t.slug for t in calm_reader.topics] == ["syria"]
            ledger = session.execute(select(ConsentEvent.reader_id, ConsentEvent.details)
                                     .order_by(ConsentEvent.id)).all()
            assert [(r, d["topics"]) for r, d in ledger] == [
                (first, ["jordan", "syria"]), (calm, ["syria"]), (first, ["iraq", "jordan"])]
            assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 3
    finally:
        events.set_dispatcher(None)
