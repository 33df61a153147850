"""Edition requests from editors, on each backend with a real worker and SMTP server.

Recent editions are listed; a double click with an idempotency key makes one edition; bad
requests change nothing. (Planning, content and sending have test files of their own.)
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from newsletter import db, events
from newsletter.cli import app as cli
from newsletter.editions import requests as editions
from newsletter.models import Edition, OutboxEvent
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, topics_for
from tests.helpers import count, invoke, publish, runner

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# ---------------------------------------------------------------- the list; double clicks

def test_recent_editions_and_an_idempotent_double_click(fresh, dispatcher) -> None:
    client = TestClient(create_app())
    publish("Aid reaches Idlib", ["Syria"])
    with db.session_scope() as session:  # the edition below is limited to this topic
        topics_for(session, ["syria"])
    with dispatcher.drop():  # requests only: nothing needs to be planned
        first = client.post("/api/editions", headers={**AUTH, "Idempotency-Key": "click-1"},
                            json={"frequency": "daily"})
        again = client.post("/api/editions", headers={**AUTH, "Idempotency-Key": "click-1"},
                            json={"frequency": "daily"})
        other = client.post("/api/editions", headers={**AUTH, "Idempotency-Key": "click-2"},
                            json={"frequency": "daily"})
        tagged = client.post("/api/editions", headers=AUTH,
                             json={"frequency": "weekly", "tags": ["Syria"]})
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


