"""/admin/topics over HTTP on each backend: an editor curates topics (add, edit, retire after
the page with the counts, bring back), turns the tags no topic covers into topics or adds
them to one, and every topic change through the console, the API and the CLI is in the audit
log with who, what and from where. Bad input is shown back as typed and changes nothing."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.models import AuditEntry, Tag, Topic
from newsletter.newsroom import tags as tag_names
from newsletter.newsroom import topics
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, add_editor, console_client, csrf_of, sign_in
from tests.newsroom.test_topics import active_reader, offered_slugs

DESK = "desk@news.example"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def signed_in(email: str = DESK, role: str = "editor") -> tuple[TestClient, str]:
    add_editor(email, role)
    client = console_client(ip="10.9.8.7")
    assert sign_in(client, email).status_code == 303
    return client, csrf_of(client)


def topic_changes() -> list[tuple[str, str, dict, str | None]]:
    """The audit log's topic entries, oldest first: (actor, target, details, ip)."""
    with db.session_scope() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "topic.change")
                               .order_by(AuditEntry.id))
        return [(e.actor, e.target, e.details, e.ip) for e in rows]


def state(slug: str) -> dict:
    with db.session_scope() as session:
        return topics.to_dict(topics.get(session, slug))


def count(model) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_an_editor_adds_edits_retires_and_brings_back_a_topic(fresh) -> None:
    client, csrf = signed_in()
    r = client.post("/admin/topics", data={
        "csrf_token": csrf, "name": "Syria", "tags": "Syria, Damascus , aleppo",
        "description": "The war and the peace.", "group": "Middle East"})
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "“Syria” was added" in page
    assert state("syria") | {"retired_at": None} == {
        "slug": "syria", "name": "Syria", "description": "The war and the peace.",
        "group": "Middle East", "position": 0, "tags": ["aleppo", "damascus", "syria"],
        "followers": None, "retired": False, "retired_at": None, "names": {}}
    assert offered_slugs(TestClient(create_app())) == {"syria"}

    # Edit: what changed is recorded, and nothing else.
    form = client.get("/admin/topics/syria").text
    assert 'value="aleppo, damascus, syria"' in form and 'value="Middle East"' in form
    r = client.post("/admin/topics/syria", data={
        "csrf_token": csrf, "description": "The war and the peace.", "group": "",
        "position": "3", "tags": "syria, damascus, homs"})
    assert r.status_code == 303
    assert state("syria")["tags"] == ["damascus", "homs", "syria"]
    assert state("syria")["group"] is None and state("syria")["position"] == 3

    # Retire: the confirmation says whom it affects before anything changes.
    only = active_reader("only.syria@example.com", ["syria"])
    with db.session_scope() as session:
        topics.create(session, "Energy")
    active_reader("both@example.com", ["syria", "energy"])
    confirm = client.get("/admin/topics/syria/retire").text
    assert "2 readers follow it; 1 follows nothing else and will get nothing until they " \
           "choose." in " ".join(re.sub(r"<[^>]+>", "", confirm).split())
    assert state("syria")["retired"] is False  # asking changed nothing
    r = client.post("/admin/topics/syria/retire", data={"csrf_token": csrf})
    assert r.status_code == 303 and state("syria")["retired"] is True
    assert offered_slugs(TestClient(create_app())) == {"energy"}
    listing = client.get("/admin/topics").text
    retired_part = listing.split('id="retired"')[1]
    assert "Syria" in retired_part and "Bring back" in retired_part
    again = client.get("/admin/topics/syria/retire").text
    assert "Syria is retired" in again and 'action="/admin/topics/syria/retire"' not in again
    r = client.post("/admin/topics/syria/restore", data={"csrf_token": csrf})
    assert r.status_code == 303 and state("syria")["retired"] is False
    assert offered_slugs(TestClient(create_app())) == {"syria", "energy"}
    assert only  # the reader's choice was kept throughout
    assert state("syria")["tags"] == ["damascus", "homs", "syria"]

    assert topic_changes() == [
        (DESK, "topic:syria", {"change": "add", "name": "Syria",
                               "tags": "aleppo, damascus, syria", "group": "Middle East",
                               "description": "The war and the peace."}, "10.9.8.7"),
        (DESK, "topic:syria", {"change": "edit", "group": "Middle East → (none)",
                               "position": "0 → 3", "tags added": "homs",
                               "tags removed": "aleppo"}, "10.9.8.7"),
        (DESK, "topic:syria", {"change": "retire", "followers": 2,
                               "follow_nothing_else": 1}, "10.9.8.7"),
        (DESK, "topic:syria", {"change": "restore"}, "10.9.8.7"),
    ]


def test_bad_input_is_shown_back_as_typed_and_changes_nothing(fresh) -> None:
    client, csrf = signed_in()
    for data, field, says in [
        ({"name": "  "}, "name", "A topic needs a name."),
        ({"name": "Syria", "tags": "syria, sy\x01ria"}, "tags", "at most 128 characters"),
        ({"name": "Syria", "tags": ",".join(f"t{i}" for i in range(51))}, "tags", "at most 50"),
        ({"name": "Syria", "description": "d" * 501}, "description", "at most 500"),
        ({"name": "<b>Syria</b>", "group": "g\x00"}, "group", "at most 128"),
    ]:
        r = client.post("/admin/topics", data={"csrf_token": csrf, **data})
        assert r.status_code == 422, data
        assert f'id="{field}-error"' in r.text and says in r.text, (data, r.text[-3000:])
        kept = ('value="&lt;b&gt;Syria&lt;/b&gt;"' if "<b>" in data["name"]
                else f'value="{data["name"]}"')
        assert kept in r.text  # what was typed comes back, escaped
    assert count(Topic) == 0 and count(Tag) == 0 and topic_changes() == []

    client.post("/admin/topics", data={"csrf_token": csrf, "name": "Syria"})
    r = client.post("/admin/topics", data={"csrf_token": csrf, "name": "syria ",
                                           "description": "kept"})
    assert r.status_code == 422 and "There is already a topic “Syria”" in r.text
    assert 'value="kept"' in r.text
    for position, says in [("two", "whole number"), ("2000000", "between")]:
        r = client.post("/admin/topics/syria", data={
            "csrf_token": csrf, "description": "New words", "group": "", "position": position,
            "tags": "syria"})
        assert r.status_code == 422 and says in r.text and 'value="New words"' in r.text
    r = client.post("/admin/topics/syria", data={
        "csrf_token": csrf, "description": "", "group": "", "position": "1", "tags": " , "})
    assert r.status_code == 422 and 'id="tags-error"' in r.text
    assert state("syria")["description"] == "" and state("syria")["position"] == 0
    assert client.get("/admin/topics/nothing-here").status_code == 404
    assert client.post("/admin/topics/nothing-here/retire",
                       data={"csrf_token": csrf}).status_code == 404
    assert client.post("/admin/topics/tags/nothing-here/cover",
                       data={"csrf_token": csrf, "topic": "syria"}).status_code == 404
    assert len(topic_changes()) == 1  # the one topic added


def test_tags_in_no_topic_are_searched_paged_and_curated_in_one_step(fresh) -> None:
    with db.session_scope() as session:
        tag_names.get_or_create_tags(
            session, ["Aleppo", "Damascus", "100%_proof", "1000-proof"]
            + [f"Town {i:02d}" for i in range(30)])
        topics.create(session, "Syria")
    client, csrf = signed_in("chief@news.example", "admin")  # admins curate too
    first = client.get("/admin/topics").text
    assert "34 tags in no topic" in first and "Page 1 of 2" in first
    assert 'href="?page=1&amp;retired_page=1&amp;tags_page=2" rel="next"' in first
    rows = re.findall(r'action="/admin/topics/tags/([^/"]+)/new"', first)
    assert len(rows) == 25
    second = client.get("/admin/topics", params={"tags_page": 2}).text
    assert len(re.findall(r'/admin/topics/tags/[^/"]+/new"', second)) == 9
    # A search is text: % and _ match only themselves.
    found = client.get("/admin/topics", params={"q": "0%_"}).text
    assert "1 tag in no topic matching" in found and "100%_proof" in found
    assert "1000-proof" not in found
    assert "No tag in no topic matches" in client.get("/admin/topics",
                                                      params={"q": "beirut"}).text

    # One step: a topic of the tag; and a tag added to a topic; the search is kept.
    r = client.post("/admin/topics/tags/aleppo/new",
                    data={"csrf_token": csrf, "q": "a", "tags_page": "1"})
    assert r.status_code == 303 and r.headers["location"] == (
        "/admin/topics?done=made&topic=aleppo&q=a&tags_page=1#tags")
    assert state("aleppo")["tags"] == ["aleppo"]
    r = client.post("/admin/topics/tags/damascus/cover",
                    data={"csrf_token": csrf, "topic": "syria"})
    assert r.status_code == 303 and state("syria")["tags"] == ["damascus", "syria"]
    assert "“Syria” now covers the tag" in client.get(r.headers["location"]).text
    assert offered_slugs(TestClient(create_app())) == {"syria", "aleppo"}
    left = client.get("/admin/topics", params={"q": "a"}).text.split('id="tags"')[1]
    assert "/admin/topics/tags/aleppo/" not in left and "/tags/damascus/" not in left

    # A tag whose name a topic already has: said so, nothing made.
    with db.session_scope() as session:
        topics.update(session, "syria", tags=["damascus"])  # the tag syria is in no topic
    r = client.post("/admin/topics/tags/syria/new", data={"csrf_token": csrf})
    assert r.status_code == 409 and "There is already a topic “Syria”" in r.text
    assert count(Topic) == 2
    assert [(actor, target, details["change"]) for actor, target, details, _ in
            topic_changes()] == [("chief@news.example", "topic:aleppo", "add"),
                                 ("chief@news.example", "topic:syria", "edit")]


def test_api_and_cli_topic_changes_are_in_the_audit_log(fresh) -> None:
    api = TestClient(create_app())
    client, _ = signed_in()
    token = re.search(r'id="new-token">([^<]+)<', client.post("/admin/tokens", data={
        "csrf_token": csrf_of(client), "name": "cms"}).text).group(1)
    desk = {"Authorization": f"Bearer {token}"}
    assert api.post("/api/topics", headers=desk, json={"name": "Energy"}).status_code == 201
    assert api.post("/api/topics", headers=desk, json={"name": "Energy"}).status_code == 200
    r = api.patch("/api/topics/energy", headers=AUTH, json={"tags": ["energy", "oil"],
                                                             "group": "Business"})
    assert r.status_code == 200
    assert api.patch("/api/topics/energy", headers=AUTH, json={"group": "Business"}).json()
    dry = api.post("/api/topics/energy/retire", params={"dry_run": "true"}, headers=desk)
    assert dry.json()["retired"] is False
    assert api.post("/api/topics/energy/retire", headers=desk).json()["retired"] is True
    assert api.post("/api/topics/energy/retire", headers=desk).status_code == 200  # again

    runner = CliRunner()
    result = runner.invoke(cli, ["topics", "add", "Gulf States", "--tag", "qatar",
                                 "--group", "Region"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["topics", "retire", "gulf-states", "--yes"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["topics", "add", "Energy"])  # brings it back
    assert result.exit_code == 0 and "exists energy" in result.output

    got = [(actor, target, details) for actor, target, details, _ in topic_changes()]
    assert got == [
        ("token:cms", "topic:energy", {"change": "add", "name": "Energy", "tags": "energy"}),
        ("token:ADMIN_TOKEN", "topic:energy", {"change": "edit",
                                               "group": "(none) → Business",
                                               "tags added": "oil"}),
        ("token:cms", "topic:energy", {"change": "retire", "followers": 0,
                                       "follow_nothing_else": 0}),
        ("cli", "topic:gulf-states", {"change": "add", "name": "Gulf States", "tags": "qatar",
                                      "group": "Region"}),
        ("cli", "topic:gulf-states", {"change": "retire", "followers": 0,
                                      "follow_nothing_else": 0}),
        ("cli", "topic:energy", {"change": "restore"}),
    ]
    # The API's entries say where the call came from, the CLI's which machine.
    assert all(ip for *_, ip in topic_changes())
    # And the console's audit page shows them, for editors too.
    page = client.get("/admin/audit", params={"action": "topic.change"}).text
    assert page.count("topic:energy") == 4 and "tags added: oil" in page
