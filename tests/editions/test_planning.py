"""Planning an edition, on each backend with a real worker and SMTP server: a dry run counts
without sending and its figures are what the real run then does; the planner marks the digests
readers share."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db
from newsletter.editions import planning
from newsletter.editions import requests as editions
from newsletter.models import Delivery, OutboxEvent, Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log
from tests.helpers import (
    READERS,
    add_readers,
    count,
    invoke,
    newsroom,
    publish,
    wait_done,
    without_topics,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_dry_run_sends_nothing_and_the_real_run_matches_it(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    newsroom()
    events_before = count(OutboxEvent)

    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly", "dry_run": True})
    assert r.status_code == 202, r.text
    dry = wait_done(r.json()["id"])
    assert dry["status"] == "done" and dry["dry_run"] is True, dump_log(backend)
    expected = {"readers": 5, "emails": 4, "distinct_digests": 3, "articles": 3}
    assert without_topics(dry["plan"]) == expected
    assert dry["distinct_digests"] == 3
    assert dry["counts"]["planned"] == dry["counts"]["sent"] == 0
    assert client.get(f"/api/editions/{dry['id']}", headers=AUTH).json()["plan"] == dry["plan"]

    # The CLI's dry run waits for the planner and prints the same figures.
    out = invoke("send", "--frequency", "weekly", "--dry-run")
    assert "dry run" in out and re.search(r"would send\s*│?\s*4", out), out

    # Nothing was sent, queued or changed: only the two requests' events were written.
    assert count(Delivery) == 0
    assert count(OutboxEvent) == events_before + 2
    assert count(Reader, Reader.last_digest_at.is_not(None)) == 0
    assert backend.smtp.received == []

    out = invoke("send", "--frequency", "weekly", "--wait")
    real_id = int(re.search(r"edition (\d+) requested", out).group(1))
    assert "sent" in out and "done" in out
    real = wait_done(real_id)
    assert real["status"] == "done", dump_log(backend)
    assert real["counts"]["planned"] == real["counts"]["sent"] == expected["emails"]
    assert real["distinct_digests"] == expected["distinct_digests"]
    assert without_topics(real["plan"]) == expected
    # Per topic too, the dry run said what the real run did.
    assert sorted(real["plan"]["topics"], key=str) == sorted(dry["plan"]["topics"], key=str)
    assert real["counts"]["skipped_empty"] == 1 and real["counts"]["skipped"] == 1
    messages = backend.smtp.wait_for(expected["emails"])
    assert sorted(str(m["To"]) for m in messages) == sorted(set(READERS) - {"iran@example.com"})


def test_digests_a_second_reader_shares_are_marked_and_only_those_kept_rendered(
        fresh, dispatcher) -> None:
    """The planner marks a digest shared when a page gives it a second reader, on that page
    or a later one; a worker keeps a rendered digest only if it is marked shared when first
    met, or is met again (most digests of a big edition have one reader)."""
    import os

    from newsletter.config import reload_settings
    from newsletter.editions import content
    from newsletter.mail import rendering
    from newsletter.models import EditionDigest

    publish("Aid reaches Idlib", ["Syria"])
    publish("Brent steady", ["Energy"])
    # Pages of two readers, by id: syria twice | energy, iran (no story) | both, energy.
    add_readers({"s1@example.com": ["syria"], "s2@example.com": ["syria"],
                 "e1@example.com": ["energy"], "i@example.com": ["iran"],
                 "both@example.com": ["syria", "energy"], "e2@example.com": ["energy"]})
    os.environ["NEWSLETTER_BATCH_SIZE"] = "2"
    reload_settings()
    dispatcher.drop()  # the worker stays out
    # A fresh renderer: SQLite reuses ids, an earlier test's edition may have had this one's.
    renderer = rendering.Renderer.from_settings()
    try:
        with db.session_scope() as session:
            edition_id = editions.request(session, "weekly", source="test").id
        with db.session_scope() as session:
            planning.plan(session, edition_id)
            key_of = dict(session.execute(
                select(Reader.email, Delivery.content_key).join(Delivery)
                .where(Delivery.edition_id == edition_id)).all())
            shared = dict(session.execute(
                select(EditionDigest.content_key, EditionDigest.shared)
                .where(EditionDigest.edition_id == edition_id)).all())
            assert shared == {key_of["s1@example.com"]: True, key_of["e1@example.com"]: True,
                              key_of["both@example.com"]: False}
            loaded = content.load_batch(session, {(edition_id, k) for k in shared}, renderer)

            def kept() -> set[str]:
                return {k for k in shared if content.load_batch(
                    session, [(edition_id, k)], renderer)[(edition_id, k)].entries is None}

            for key in shared:
                renderer.digest(loaded[(edition_id, key)])
            assert kept() == {key_of["s1@example.com"], key_of["e1@example.com"]}
            renderer.digest(loaded[(edition_id, key_of["both@example.com"])])
            assert kept() == set(shared)  # met again: worth keeping after all
    finally:
        del os.environ["NEWSLETTER_BATCH_SIZE"]
        reload_settings()
