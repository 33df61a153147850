"""Retention (editions/retention.py, `newsletter prune`, beat's daily job), on each backend:
after a prune no reader gets an article twice and a correction still finds who got the
article; an edition's report stays what it was; consent, audit, clicks and the digests'
article lists are untouched; deletes go in batches; a second prune changes nothing; an
edition still sending (or requeued mid-prune) is left whole."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update
from typer.testing import CliRunner

from newsletter import audit, db
from newsletter.cli import app as cli
from newsletter.config import get_settings
from newsletter.editions import archive, reconcile, reports, retention
from newsletter.errors import Conflict
from newsletter.insight import click_figures
from newsletter.models import (
    AuditEntry,
    BounceEvent,
    ConsentEvent,
    Delivery,
    Edition,
    EditionDigest,
    OutboxEvent,
    Reader,
    ReceivedDigest,
    StoryClicks,
    utcnow,
)
from newsletter.newsroom import articles
from newsletter.readers import privacy
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log
from tests.helpers import add_readers, count, publish, text_part, url_of, wait_done

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LATER = timedelta(days=91)  # a prune at 90 days, run this long after the edition finished
runner = CliRunner()


def send(client: TestClient, backend, **body) -> dict:
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly", **body})
    assert r.status_code == 202, r.text
    report = wait_done(r.json()["id"])
    assert report["status"] == "done", dump_log(backend)
    return report


def prune_later(**options) -> retention.Pruned:
    with db.session_scope() as session:
        return retention.prune(session, timedelta(days=90), now=utcnow() + LATER, **options)


def titles_to(backend, address: str) -> list[str]:
    return [text_part(m) for m in backend.smtp.messages() if m["To"] == address]


def test_no_reader_gets_an_article_twice_after_a_prune(fresh) -> None:
    backend, client = fresh, TestClient(create_app())
    publish("Aid reaches Idlib", ["Syria"])
    add_readers({"both@example.net": ["syria", "energy"]})
    # A topic-filtered digest does not move the reader's last digest on: only their history
    # keeps the next full digest from carrying A again.
    first = send(client, backend, tags=["syria"])
    assert first["counts"]["sent"] == 1
    assert "Aid reaches Idlib" in titles_to(backend, "both@example.net")[0]

    gone = prune_later()
    assert (gone.editions, gone.deliveries) == (1, 1)
    assert count(Delivery) == 0 and count(ReceivedDigest) == 1

    publish("Brent steady", ["Energy"])
    backend.smtp.clear()
    send(client, backend)
    (digest,) = titles_to(backend, "both@example.net")
    assert "Brent steady" in digest and "Aid reaches Idlib" not in digest

    # A correction still finds who got the article (and when) through the pruned history.
    prune_later()
    with db.session_scope() as session:
        articles.publish(session, {"url": "https://news.example/a/aid-reaches-idlib",
                                   "title": "Aid reaches Idlib after a week's delay",
                                   "tags": ["Syria"]})
    backend.smtp.clear()
    send(client, backend)
    (update_mail,) = titles_to(backend, "both@example.net")
    assert "Aid reaches Idlib after a week's delay" in update_mail

    # The reader's data export still lists what they got; erasing them takes it away.
    with db.session_scope() as session:
        got = privacy.export(session, "both@example.net")["received_before_pruning"]
    assert [r["articles"] for r in got] == [[url_of("Aid reaches Idlib")],
                                            [url_of("Brent steady")]]
    assert all(r["sent_at"] for r in got)
    with db.session_scope() as session:
        privacy.erase(session, "both@example.net")
    assert count(ReceivedDigest) == 0


def full_report(edition_id: int) -> dict:
    with db.session_scope() as session:
        return {"report": reports.report(session, edition_id),
                "bounces": reports.bounces(session, [edition_id]),
                "sample": reports.sample(session, edition_id),
                "topics": reports.topics(session, edition_id),
                "last_sent": reports.last_sent(session),
                "clicks": click_figures.edition_clicks(session, edition_id),
                "archive": archive.edition_archive(session, edition_id)}  # view in browser


def test_a_pruned_edition_keeps_its_report_and_nothing_kept_is_touched(fresh) -> None:
    backend, client = fresh, TestClient(create_app())
    publish("Aid reaches Idlib", ["Syria"])
    publish("Brent steady", ["Energy"])
    add_readers({"syria@example.com": ["syria"], "energy@example.org": ["energy"],
                 "both@example.net": ["syria", "energy"]})
    edition_id = send(client, backend)["id"]
    with db.session_scope() as session:  # a bounce and a click on what it sent
        delivery = session.scalars(select(Delivery).order_by(Delivery.id)).first()
        session.add(BounceEvent(reader_id=delivery.reader_id, kind="hard", source="webhook",
                                delivery_id=delivery.id, dedupe_key="b1", email_hash="h"))
        session.add(StoryClicks(edition_id=edition_id, article_id=1, topic_id=1, clicks=3,
                                delivery_id=delivery.id, last_at=utcnow()))  # reader mode
        audit.record(session, "editor@example.org", "edition.note", f"edition:{edition_id}")
    before = full_report(edition_id)
    kept_before = snapshot()
    assert before["report"]["counts"]["sent"] == 3 and before["bounces"]
    assert before["clicks"]["readers"] == {"sent": 3, "clicked": 1, "share": 0.3333}
    assert len(before["archive"]["sections"]) == 2

    gone = prune_later()
    assert gone.deliveries == 3 and count(Delivery) == 0
    assert full_report(edition_id) == before
    assert snapshot() == kept_before
    with db.session_scope() as session:
        assert session.get(Edition, edition_id).pruned_at is not None
        assert session.scalar(select(BounceEvent.delivery_id)) is None  # the link only


def snapshot() -> dict:
    """What a prune must leave as it was: consent ledger, audit log, clicks, digests."""
    with db.session_scope() as session:
        return {model.__tablename__: sorted(map(repr, session.execute(
                    select(*model.__table__.columns)).all()))
                for model in (ConsentEvent, AuditEntry, StoryClicks, EditionDigest)}


def finished_edition(days_ago: float, deliveries: int, status: str = "done") -> int:
    """An edition as a past week left it: its readers, their digests, delivered."""
    with db.session_scope() as session:
        at = utcnow() - timedelta(days=days_ago)
        edition = Edition(frequency="weekly", status=status, cutoff_at=at,
                          finished_at=at if status == "done" else None)
        session.add(edition)
        session.flush()
        session.add(EditionDigest(edition_id=edition.id, content_key="k", items=[]))
        for n in range(deliveries):
            reader = Reader(email=f"r{edition.id}.{n}@example.org", status="active")
            session.add(reader)
            session.flush()
            session.add(Delivery(edition_id=edition.id, reader_id=reader.id, status="sent",
                                 claimed_at=at, message_id=f"<{edition.id}.{n}@x>",
                                 content_key="k"))
        return edition.id


def deletes_of_deliveries(run) -> int:
    seen = []
    engine = db.get_engine()

    def note(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM DELIVERIES"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return len(seen)


@pytest.mark.usefixtures("fresh")
def test_batches_small_and_default_and_a_second_prune_changes_nothing() -> None:
    small = finished_edition(100, 5)
    assert deletes_of_deliveries(lambda: prune_later(batch=2)) == 3  # 2 + 2 + 1
    assert count(Delivery) == 0 and count(ReceivedDigest) == 5
    assert get_settings().retention_batch == 5000
    finished_edition(100, 7)
    assert deletes_of_deliveries(prune_later) == 1  # one batch at the default
    state = snapshot(), count(ReceivedDigest), full_report(small)
    assert prune_later() == retention.Pruned()
    assert (snapshot(), count(ReceivedDigest), full_report(small)) == state


@pytest.mark.usefixtures("fresh")
def test_the_default_retention_and_beat_job_prune_past_400_days_only() -> None:
    assert get_settings().retention_days == 400
    kept, old = finished_edition(399, 2), finished_edition(401, 2)
    with db.session_scope() as session:  # dispatched events: one past the cutoff
        session.add_all([OutboxEvent(name="x", dispatched_at=utcnow() - timedelta(days=401)),
                         OutboxEvent(name="y", dispatched_at=utcnow() - timedelta(days=10))])
    from workers.celery_app import get_app

    get_app().send_task("newsletter.prune")  # what beat sends once a day
    deadline = time.monotonic() + 30
    # The outbox goes after the editions: wait for both (or fail on the asserts below).
    while (count(Delivery, Delivery.edition_id == old) or count(OutboxEvent) > 1) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count(Delivery, Delivery.edition_id == old) == 0
    assert count(Delivery, Delivery.edition_id == kept) == 2
    assert count(OutboxEvent) == 1
    with db.session_scope() as session:
        assert session.get(Edition, kept).pruned_at is None


@pytest.mark.usefixtures("fresh")
def test_live_editions_are_left_whole_and_a_requeue_mid_prune_is_refused() -> None:
    sending = finished_edition(200, 2, status="sending")
    paused = finished_edition(200, 2, status="paused")
    racing, requeued_first = finished_edition(200, 4), finished_edition(200, 2)
    with db.session_scope() as session:  # dead letters a requeue would send again
        session.execute(update(Delivery).where(Delivery.edition_id.in_([racing, requeued_first]))
                        .values(status="failed", failure="temporary", claimed_at=None))
    with db.session_scope() as session:  # an operator's requeue before the prune: live again
        reconcile.requeue_dead(session, requeued_first)
    refused = []

    def requeue_after_the_first_batch(_session) -> None:
        # An operator's `newsletter requeue` landing between two of the prune's batches.
        if not refused and count(Delivery, Delivery.edition_id == racing) == 3:
            with db.session_scope() as other, pytest.raises(Conflict, match="pruned"):
                reconcile.requeue_dead(other, racing)
            refused.append(True)

    with db.session_scope() as session:
        event.listen(session, "after_commit", requeue_after_the_first_batch)
        # At the real time: the requeued edition, once resent, finished just now, not 90d ago.
        gone = retention.prune(session, timedelta(days=90), batch=1)
    assert refused
    assert (gone.editions, gone.deliveries) == (1, 4)  # the racing one, whole
    assert count(Delivery, Delivery.edition_id.in_([sending, paused, requeued_first])) == 6
    with db.session_scope() as session:
        assert session.get(Edition, racing).pruned_at is not None
        for live in (sending, paused, requeued_first):
            assert session.get(Edition, live).pruned_figures is None
    assert full_report(racing)["report"]["counts"]["dead_letter"] == 4


@pytest.mark.usefixtures("fresh")
def test_the_command_refuses_less_than_a_day_and_a_dry_run_drops_nothing() -> None:
    finished_edition(100, 3)
    for bad in ("12h", "0d", "90", "90m", "-3d", "1e9d"):
        result = runner.invoke(cli, ["prune", "--older-than", bad])
        assert result.exit_code == 2 and "older-than" in result.output, (bad, result.output)
    assert count(Delivery) == 3
    result = runner.invoke(cli, ["prune", "--older-than", "90d", "--dry-run"])
    assert result.exit_code == 0 and "would drop: 3 deliveries of 1 editions" in result.output
    assert count(Delivery) == 3 and count(AuditEntry) == 0
    result = runner.invoke(cli, ["prune", "--older-than", "36h"])
    assert result.exit_code == 0 and "dropped: 3 deliveries of 1 editions" in result.output
    assert count(Delivery) == 0
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "retention.prune")) == 1
