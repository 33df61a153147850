"""Issue 16, item 5: a global ceiling on confirmation emails per minute
(NEWSLETTER_CONFIRMATION_RATE_PER_MINUTE), shared by every worker process (Redis on a Redis
broker, a locked file on the embedded one). Over it a confirmation waits for room and is
sent then, never dropped, and the reader's answer page does not change. Here the ceiling is
2 a minute (set before this module's worker starts); test_confirmation_ceiling_default.py
shows the default."""

from __future__ import annotations

import os
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db
from newsletter.models import Reader
from newsletter.web.app import create_app
from tests.conftest import offer_topics, post_subscribe


@pytest.fixture(scope="module", autouse=True)
def ceiling_of_two():
    # Autouse and module-scoped: set before the module's backend starts its worker.
    os.environ["NEWSLETTER_CONFIRMATION_RATE_PER_MINUTE"] = "2"
    yield
    os.environ.pop("NEWSLETTER_CONFIRMATION_RATE_PER_MINUTE")


@pytest.fixture
def client(fresh):
    with db.session_scope() as session:
        offer_topics(session, "Syria")
    return TestClient(create_app())


def confirmed_to(backend) -> set[str]:
    return {m["To"] for m in backend.smtp.messages()}


def test_the_confirmation_over_the_ceiling_is_sent_when_there_is_room(client, fresh) -> None:
    emails = ["one@example.com", "two@example.com", "three@example.com"]
    started = time.monotonic()
    pages = [post_subscribe(client, email=e, topics=["syria"], frequency="weekly",
                            consent="yes") for e in emails]
    assert {p.status_code for p in pages} == {200}
    assert pages[0].content == pages[1].content == pages[2].content  # the same answer
    deadline = time.monotonic() + 30
    while len(confirmed_to(fresh)) < 2:
        assert time.monotonic() < deadline, "the first two confirmations did not come"
        time.sleep(0.05)
    time.sleep(3)
    assert len(confirmed_to(fresh)) == 2  # the third waits for room ...
    with db.session_scope() as session:
        waiting = session.scalars(select(Reader).where(
            Reader.confirmation_sent_at.is_(None))).all()
    assert len(waiting) == 1 and waiting[0].confirmation_error is None
    deadline = time.monotonic() + 120
    while confirmed_to(fresh) != set(emails):  # ... and is sent once the minute is over
        assert time.monotonic() < deadline, "the deferred confirmation was never sent"
        time.sleep(0.2)
    assert time.monotonic() - started >= 55
