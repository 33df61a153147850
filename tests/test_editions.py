"""Editions for editors, on each backend with a real worker and SMTP server.

A dry run counts without sending and its figures are what the real run then does; an
edition's report splits failures and skips; recent editions are listed; a double click with
an idempotency key makes one edition.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from newsletter import db, events, tokens
from newsletter.cli import app as cli
from newsletter.cli import console
from newsletter.editions import deliveries, planning, reports
from newsletter.editions import requests as editions
from newsletter.mail import mailer
from newsletter.mail.capture import free_port
from newsletter.models import Delivery, Edition, OutboxEvent, Reader, Tag, utcnow
from newsletter.newsroom import articles
from newsletter.readers import subscriptions
from newsletter.sending import batch
from newsletter.states import FINISHED
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
runner = CliRunner()
console.width = 160  # not a terminal under CliRunner: rich would wrap tables at 80 columns


# ---------------------------------------------------------------- helpers (shared with the
# schedule and preview tests)

def url_of(title: str) -> str:
    return "https://news.example/a/" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def publish(title: str, tags: list[str], **extra) -> int:
    with db.session_scope() as session:
        article, _ = articles.publish(session, {
            "url": url_of(title), "title": title, "summary": f"Summary of {title}.",
            "tags": tags, **extra})
        return article.id


def add_readers(readers: dict[str, Iterable[str]], frequency: str = "weekly") -> dict[str, int]:
    """Active readers following the given tag slugs (confirmed already: seeding, not a test
    of the subscribe path)."""
    ids = {}
    with db.session_scope() as session:
        for email, slugs in readers.items():
            tags = list(session.scalars(select(Tag).where(Tag.slug.in_(list(slugs)))))
            reader = Reader(email=email, status="active", frequency=frequency, source="test",
                            confirmed_at=utcnow(), topics=tags)
            session.add(reader)
            session.flush()
            ids[email] = reader.id
    return ids


def without_topics(plan: dict) -> dict:
    """A plan's figures but its per-topic ones (the console's, checked where they matter)."""
    return {k: v for k, v in plan.items() if k != "topics"}


def wait_done(edition_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            report = reports.report(session, edition_id)
        if report["status"] in FINISHED:
            return report
        time.sleep(0.1)
    raise AssertionError(f"edition {edition_id} did not finish: {report}")


def count(model, *where) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def invoke(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# ---------------------------------------------------------------- dry run

READERS = {
    "syria.a@example.com": ["syria"],
    "syria.b@example.com": ["syria"],  # the same digest as syria.a
    "energy@example.org": ["energy"],
    "both@example.net": ["syria", "energy"],
    "iran@example.com": ["iran"],  # nothing on Iran this week: considered, not emailed
}


def newsroom() -> None:
    publish("Tehran archive", ["Iran"], published_at=(utcnow() - timedelta(days=40)).isoformat())
    publish("Aid reaches Idlib", ["Syria"])
    publish("Brent steady", ["Energy"])
    publish("Solar in Homs", ["Syria", "Energy"])
    add_readers(READERS)
    add_readers({"daily@example.com": ["syria"]}, frequency="daily")  # not in a weekly edition


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


def test_report_splits_failures_and_skips_and_counts_unsubscribes(fresh, picky_relay) -> None:
    relay, transport = picky_relay
    publish("Aid reaches Idlib", ["Syria"])
    publish("Tehran archive", ["Iran"], published_at=(utcnow() - timedelta(days=40)).isoformat())
    ids = add_readers({"ok@example.com": ["syria"], "perm@example.com": ["syria"],
                       "temp@example.com": ["syria"], "gone@example.com": ["syria"],
                       "quiet@example.com": ["iran"]})
    # The worker stays out: plan and send here, with the picky relay.
    events.set_dispatcher(lambda *_: False)
    try:
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
    finally:
        events.set_dispatcher(None)

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


# ---------------------------------------------------------------- the list; double clicks

def test_recent_editions_and_an_idempotent_double_click(fresh) -> None:
    client = TestClient(create_app())
    publish("Aid reaches Idlib", ["Syria"])
    events.set_dispatcher(lambda *_: False)  # requests only: nothing needs to be planned
    try:
        first = client.post("/api/editions", headers={**AUTH, "Idempotency-Key": "click-1"},
                            json={"frequency": "daily"})
        again = client.post("/api/editions", headers={**AUTH, "Idempotency-Key": "click-1"},
                            json={"frequency": "daily"})
        other = client.post("/api/editions", headers={**AUTH, "Idempotency-Key": "click-2"},
                            json={"frequency": "daily"})
        tagged = client.post("/api/editions", headers=AUTH,
                             json={"frequency": "weekly", "tags": ["Syria"]})
    finally:
        events.set_dispatcher(None)
    assert {r.status_code for r in (first, again, other, tagged)} == {202}
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert count(Edition) == 3
    assert count(OutboxEvent, OutboxEvent.name == events.EDITION_REQUESTED) == 3

    listed = client.get("/api/editions?limit=2", headers=AUTH)
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()] == [tagged.json()["id"], other.json()["id"]]
    assert listed.json()[0]["tags"] == ["syria"] and listed.json()[0]["status"] == "planning"
    assert set(listed.json()[0]["counts"]) >= {"planned", "sent", "failed", "skipped",
                                               "unsubscribed"}
    assert len(client.get("/api/editions", headers=AUTH).json()) == 3
    assert client.get("/api/editions?limit=0", headers=AUTH).status_code == 422
    assert client.get("/api/editions").status_code == 401

    out = invoke("editions", "--limit", "5")
    for edition_id in (first.json()["id"], other.json()["id"], tagged.json()["id"]):
        assert re.search(rf"│\s*{edition_id}\s*│", out), out
    assert "weekly digest [syria]" in out


def test_bad_requests_change_nothing(fresh) -> None:
    client = TestClient(create_app())
    before = count(Edition)
    assert client.post("/api/editions", headers=AUTH,
                       json={"frequency": "hourly", "dry_run": True}).status_code == 422
    assert client.post("/api/editions", headers={**AUTH, "Idempotency-Key": " "},
                       json={"frequency": "daily"}).status_code == 422
    result = runner.invoke(cli, ["send"])
    assert result.exit_code == 2 and "--frequency" in result.output
    assert count(Edition) == before
    with db.session_scope() as session, pytest.raises(editions.EditionError, match="dry run"):
        editions.request(session, "daily", dry_run=True, period="2026-11-28")
    assert count(Edition) == before


def test_a_digest_the_renderer_keeps_is_versioned_without_its_items_and_renders_the_same(
        fresh) -> None:
    """A digest the renderer keeps encoded is versioned from the article ids it holds, its
    items not read; one edited since is loaded whole again, and renders as it did."""
    from newsletter.editions import content
    from newsletter.mail import rendering

    newsroom()
    events.set_dispatcher(lambda *_: False)  # the worker stays out
    renderer = rendering.Renderer.from_settings()  # fresh: no earlier test's digests
    try:
        with db.session_scope() as session:
            edition_id = editions.request(session, "weekly", source="test").id
        with db.session_scope() as session:
            planning.plan(session, edition_id)
            keys = {(edition_id, k) for k in session.scalars(
                select(Delivery.content_key).where(Delivery.edition_id == edition_id))}
            assert len(keys) == 3  # syria, energy, both
            loaded = content.load_batch(session, keys, renderer)
            assert all(loaded[k].entries for k in keys)  # nothing held yet: all read
            first = {k: renderer.rendered_digest(loaded[k]) for k in keys}
            for k in keys:
                renderer.digest(loaded[k])
                renderer.digest(loaded[k])  # met again: kept
            # The next batch of the edition meets the same digests again.
            again_loaded = content.load_batch(session, keys, renderer)
            assert {k: again_loaded[k].version for k in keys} == \
                {k: loaded[k].version for k in keys}
            assert all(again_loaded[k].entries is None for k in keys)  # items not read
            fresh_renderer = rendering.Renderer.from_settings()
            whole = content.load_batch(session, keys, fresh_renderer)
            again = {k: fresh_renderer.rendered_digest(whole[k]) for k in sorted(keys)}
    finally:
        events.set_dispatcher(None)
    for k in keys:
        assert (again[k].subject, again[k].text, again[k].html) == \
            (first[k].subject, first[k].text, first[k].html)
    assert all("Summary of" in r.text for r in again.values())  # stories, not empty digests


def test_digests_a_second_reader_shares_are_marked_and_only_those_kept_rendered(fresh) -> None:
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
    events.set_dispatcher(lambda *_: False)  # the worker stays out
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
        events.set_dispatcher(None)
        del os.environ["NEWSLETTER_BATCH_SIZE"]
        reload_settings()
