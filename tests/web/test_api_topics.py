"""The topics API on SQLite: idempotent creation, listing, changes, retiring, tags."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db
from newsletter.models import Reader, Tag, Topic
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, configure, offer_topics

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(tmp_path) -> TestClient:
    # No worker consumes this broker: events are recorded, nothing is sent.
    configure(tmp_path, f"sqlite:///{tmp_path / 'topics.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    return TestClient(create_app())


def count(model) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_creating_a_topic_is_idempotent_by_name(client) -> None:
    first = client.post("/api/topics", headers=AUTH, json={
        "name": "Gulf States", "description": "Riyadh, Doha and their money.",
        "group": "Region"})
    assert first.status_code == 201
    assert first.json() | {"retired_at": None} == {
        "slug": "gulf-states", "name": "Gulf States", "description":
        "Riyadh, Doha and their money.", "group": "Region", "position": 0,
        "tags": ["gulf-states"], "followers": None, "retired": False, "retired_at": None,
        "names": {}}
    again = client.post("/api/topics", headers=AUTH, json={"name": "Gulf States",
                                                             "tags": ["qatar"]})
    assert again.status_code == 200 and again.json()["tags"] == ["gulf-states"]  # unchanged
    assert count(Topic) == 1 and count(Tag) == 1
    syria = client.post("/api/topics", headers=AUTH,
                        json={"name": "Syria", "tags": ["Syria", "Damascus", "aleppo"]})
    assert syria.status_code == 201 and syria.json()["position"] == 1
    assert syria.json()["tags"] == ["aleppo", "damascus", "syria"]  # unknown tags are made


@pytest.mark.parametrize("body", [
    {}, {"name": ""}, {"name": "  "}, {"name": "---"}, {"name": "x" * 129},
    {"name": "Syria", "tags": []}, {"name": "Syria", "tags": [""]},
    {"name": "Syria", "tags": ["t"] * 51}, {"name": "Syria", "tags": "syria"},
    {"name": "Sy\x01ria"}, {"name": "Syria", "description": "d" * 501},
    {"name": "Syria", "colour": "red"}, {"name": "Syria", "group": "g\x00"},
])
def test_bad_topics_are_refused_and_change_nothing(client, body) -> None:
    r = client.post("/api/topics", headers=AUTH, json=body)
    assert r.status_code == 422 and r.json()["detail"], r.text
    assert count(Topic) == 0 and count(Tag) == 0


def test_topics_answer_only_to_the_admin_token(client) -> None:
    assert client.post("/api/topics", json={"name": "Syria"}).status_code == 401
    assert client.get("/api/topics").status_code == 401
    assert client.get("/api/tags").status_code == 401
    assert client.post("/api/topics/syria/retire",
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert count(Topic) == 0


def test_listing_changing_and_retiring(client) -> None:
    with db.session_scope() as session:
        syria, energy = offer_topics(session, "Syria", "Energy")
        session.add_all([Reader(email="a@example.com", status="active", topics=[syria]),
                         Reader(email="b@example.com", status="active",
                                topics=[syria, energy]),
                         Reader(email="c@example.com", status="unsubscribed",
                                topics=[syria])])
    listed = client.get("/api/topics", headers=AUTH).json()
    assert [(t["slug"], t["followers"], t["retired"]) for t in listed] == [
        ("syria", 2, False), ("energy", 1, False)]

    r = client.patch("/api/topics/energy", headers=AUTH, json={
        "position": -5, "group": "Themes", "tags": ["energy", "oil"],
        "description": "Oil, gas and power."})
    assert r.status_code == 200 and r.json()["tags"] == ["energy", "oil"]
    assert r.json()["group"] == "Themes" and r.json()["position"] == -5
    r = client.patch("/api/topics/energy", headers=AUTH, json={"group": None})
    assert r.json()["group"] is None and r.json()["description"] == "Oil, gas and power."
    assert client.patch("/api/topics/energy", headers=AUTH,
                        json={"tags": []}).status_code == 422
    assert client.patch("/api/topics/atlantis", headers=AUTH,
                        json={"position": 1}).status_code == 404
    assert [t["slug"] for t in client.get("/api/topics", headers=AUTH).json()] == [
        "energy", "syria"]

    asked = client.post("/api/topics/syria/retire?dry_run=true", headers=AUTH).json()
    assert asked == {"slug": "syria", "followers": 2, "follow_nothing_else": 1,
                     "retired": False}
    assert not client.get("/api/topics", headers=AUTH).json()[1]["retired"]
    for _ in range(2):  # retiring twice is retiring once
        done = client.post("/api/topics/syria/retire", headers=AUTH)
        assert done.status_code == 200 and done.json()["retired"] is True
    last = client.get("/api/topics", headers=AUTH).json()[-1]
    assert last["slug"] == "syria" and last["retired"] and last["retired_at"]
    assert client.post("/api/topics/atlantis/retire", headers=AUTH).status_code == 404
    # Naming a retired topic again brings it back.
    back = client.post("/api/topics", headers=AUTH, json={"name": "Syria"})
    assert back.status_code == 200 and back.json()["retired"] is False


def test_tags_and_the_uncovered_ones(client) -> None:
    r = client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Aid reaches Idlib", "summary": "s",
        "tags": ["Syria", "Idlib"]})
    assert r.status_code == 201
    assert client.get("/api/tags", headers=AUTH).json() == [
        {"slug": "idlib", "name": "Idlib"}, {"slug": "syria", "name": "Syria"}]
    assert [t["slug"] for t in client.get("/api/tags?uncovered=true", headers=AUTH).json()] \
        == ["idlib", "syria"]
    client.post("/api/topics", headers=AUTH, json={"name": "Syria"})
    assert [t["slug"] for t in client.get("/api/tags?uncovered=true", headers=AUTH).json()] \
        == ["idlib"]
