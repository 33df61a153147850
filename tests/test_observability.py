"""Metrics move when mail is sent and fails; logs are JSON with ids and no addresses;
liveness and readiness see the database and the broker."""

from __future__ import annotations

import json
import re
import time

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.config import get_settings
from newsletter.models import Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, post_subscribe

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(all_samples, name: str, **labels) -> float:
    return sum(v for (n, ls), v in all_samples.items()
               if n == name and set(labels.items()) <= set(ls))


def worker_metrics() -> dict:
    port = get_settings().worker_metrics_port
    return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def test_metrics_move_when_mail_is_sent_and_fails(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    before_worker, before_web = worker_metrics(), samples(client.get("/metrics", headers=AUTH).text)
    client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/seed", "title": "Seed", "tags": ["Syria"],
        "published_at": "2026-01-01T00:00:00Z"})
    client.post("/api/topics", headers=AUTH, json={"name": "Syria"})  # offered to readers
    for email in ("good@example.com", "bounce-gone@example.com"):
        assert post_subscribe(client, email=email, topics=["syria"], frequency="weekly",
                              consent="yes").status_code == 200
    backend.smtp.wait_for(1)  # the good reader's confirmation; the other is refused at RCPT
    with db.session_scope() as session:
        for reader in session.scalars(select(Reader)):
            assert client.post(f"/confirm/{tokens.make('confirm', reader.id, reader.email)}"
                               ).status_code == 200
    backend.smtp.wait_for(2)  # the good reader's welcome
    client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Aid reaches Idlib", "tags": ["Syria"]})
    edition_id = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"}
                             ).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/api/editions/{edition_id}", headers=AUTH).json()["status"] != "done":
        assert time.monotonic() < deadline, dump_log(backend)
        time.sleep(0.1)

    after = worker_metrics()
    def delta(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before_worker, name, **labels)

    assert delta("newsletter_emails_total", kind="edition", outcome="sent") == 1
    assert delta("newsletter_emails_total", kind="edition", outcome="failed",
                 reason="permanent") == 1
    assert delta("newsletter_emails_total", kind="confirm", outcome="sent") == 1
    assert delta("newsletter_emails_total", kind="confirm", outcome="failed") == 1
    assert delta("newsletter_smtp_send_seconds_count") == 2
    assert delta("newsletter_batch_seconds_count") >= 1

    web = samples(client.get("/metrics", headers=AUTH).text)
    assert value(web, "newsletter_subscribe_requests_total", outcome="accepted") - value(
        before_web, "newsletter_subscribe_requests_total", outcome="accepted") == 2
    assert value(web, "newsletter_edition_deliveries", edition_id=str(edition_id),
                 status="sent") == 1
    assert value(web, "newsletter_edition_deliveries", edition_id=str(edition_id),
                 status="failed") == 1
    assert value(web, "newsletter_edition_duration_seconds", edition_id=str(edition_id)) > 0
    assert value(web, "newsletter_outbox_backlog") == 0
    # The 550 5.1.1 at RCPT unsubscribed and suppressed that reader.
    assert value(web, "newsletter_readers", status="active") == 1
    assert value(web, "newsletter_readers", status="unsubscribed") == 1

    # The worker's log: JSON lines, the batch with its edition and delivery ids, and no
    # reader address anywhere at info level.
    lines = [json.loads(line) for line in backend.worker_log.read_text().splitlines()
             if line.startswith("{")]
    batches = [entry for entry in lines if entry["msg"] == "batch sent"
               and entry["edition_id"] == [edition_id]]
    assert batches and batches[0]["counts"]["sent"] == 1 and len(batches[0]["delivery_ids"]) == 2
    assert not [entry for entry in lines if re.search(r"[\w.+-]+@example\.com", json.dumps(entry))
                and entry["level"] == "info"]


def test_health_and_readiness(fresh) -> None:
    client = TestClient(create_app())
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "broker": "ok"}
