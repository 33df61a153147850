"""Curated topics: editors decide what readers may follow; each topic covers tags.

Through the real doors (API, form) and a real worker and SMTP server, on both backends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, events, tokens
from newsletter.config import get_settings, reload_settings
from newsletter.errors import TopicError, TopicNotFound
from newsletter.models import Reader, Topic
from newsletter.newsroom import articles, topics
from newsletter.newsroom import tags as tag_names
from newsletter.readers import subscriptions
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, form_token, post_subscribe
from tests.helpers import text_part, url_of, wait_edition

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def publish(client: TestClient, title: str, tags: list[str]) -> int:
    r = client.post("/api/articles", headers=AUTH, json={
        "url": url_of(title), "title": title, "summary": f"About {title}.", "tags": tags})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def offered_slugs(client: TestClient) -> set[str]:
    page = client.get("/subscribe").text
    return set(re.findall(r'name="topics" value="([^"]+)"', page))


def active_reader(email: str, slugs: list[str], frequency: str = "weekly") -> int:
    """Subscribed and confirmed through the domain; their notices are not the subject."""
    events.set_dispatcher(lambda *_: True)
    try:
        with db.session_scope() as session:
            reader_id = subscriptions.subscribe(session, email, slugs, frequency,
                                                consent_given=True, source="api")
        with db.session_scope() as session:
            subscriptions.confirm(session, tokens.make("confirm", reader_id, email))
    finally:
        events.set_dispatcher(None)
    return reader_id


@pytest.fixture
def topics_from_tags() -> Iterator[None]:
    os.environ["NEWSLETTER_TOPICS_FROM_TAGS"] = "true"
    reload_settings()
    yield
    os.environ.pop("NEWSLETTER_TOPICS_FROM_TAGS", None)
    reload_settings()


def test_a_new_tag_is_offered_to_nobody_until_an_editor_adds_it_to_a_topic(fresh) -> None:
    assert get_settings().topics_from_tags is False  # curation is the default
    client = TestClient(create_app())
    publish(client, "Aleppo market reopens", ["Aleppo"])
    assert "aleppo" not in offered_slugs(client)
    r = post_subscribe(client, email="early@example.com", topics=["aleppo"],
                       frequency="weekly", consent="yes")
    assert r.status_code == 422 and "Unknown topic" in r.text
    assert client.get("/api/tags", params={"uncovered": "true"}, headers=AUTH).json() == [
        {"slug": "aleppo", "name": "Aleppo"}]

    r = client.post("/api/topics", headers=AUTH,
                    json={"name": "Syria", "tags": ["syria", "Aleppo"]})
    assert r.status_code == 201 and r.json()["tags"] == ["aleppo", "syria"]
    assert offered_slugs(client) == {"syria"}  # the topic, not its tags
    assert client.get("/api/tags", params={"uncovered": "true"}, headers=AUTH).json() == []
    r = post_subscribe(client, email="early@example.com", topics=["syria"],
                       frequency="weekly", consent="yes")
    assert r.status_code == 200 and "Check your inbox" in r.text


def test_with_topics_from_tags_every_new_tag_becomes_a_topic(fresh, topics_from_tags) -> None:
    client = TestClient(create_app())
    publish(client, "Aleppo market reopens", ["Aleppo", "Syria"])
    assert offered_slugs(client) == {"aleppo", "syria"}
    with db.session_scope() as session:
        made = {t.slug: [g.slug for g in t.tags] for t in session.scalars(select(Topic))}
    assert made == {"aleppo": ["aleppo"], "syria": ["syria"]}
    # A tag an editor already put in a topic makes no second one.
    with db.session_scope() as session:
        topics.create(session, "Levant", tags=["lebanon"])
    publish(client, "Beirut port", ["Lebanon"])
    assert offered_slugs(client) == {"aleppo", "syria", "levant"}


def test_a_topic_covering_several_tags_delivers_each_story_once_under_it(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    for body in ({"name": "Syria", "tags": ["syria", "damascus", "aleppo"]},
                 {"name": "Energy"}):
        assert client.post("/api/topics", headers=AUTH, json=body).status_code == 201
    active_reader("syria@example.com", ["syria"])
    active_reader("both@example.com", ["syria", "energy"])
    publish(client, "Aleppo market reopens", ["Aleppo"])
    publish(client, "Damascus talks resume", ["Damascus", "Syria"])  # two tags, one topic
    publish(client, "Damascus grid restored", ["Energy", "Damascus"])  # main tag: energy
    publish(client, "Cairo metro extended", ["Egypt"])  # a tag in no topic: nobody's
    backend.smtp.clear()
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    report = wait_edition(client, r.json()["id"])
    assert report["counts"]["sent"] == 2, dump_log(backend)
    got = {str(m["To"]): text_part(m) for m in backend.smtp.wait_for(2)}
    syria, both = got["syria@example.com"], got["both@example.com"]
    grid = url_of("Damascus grid restored")
    for text in (syria, both):
        for title in ("Aleppo market reopens", "Damascus talks resume", "Damascus grid restored"):
            assert text.count(url_of(title)) == 1, text  # each story once
        assert "Cairo metro" not in text and "ALEPPO" not in text and "DAMASCUS" not in text
    # One reader has the grid story under Syria (their topic covering damascus), the other
    # under Energy (their topic covering its main tag).
    assert "ENERGY" not in syria and grid in syria.split("SYRIA\n")[1]
    assert grid in both.split("ENERGY\n")[1] and grid not in both.split("ENERGY\n")[0]


def test_retiring_says_whom_it_affects_then_stops_the_topic(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    for name in ("Syria", "Energy"):
        assert client.post("/api/topics", headers=AUTH, json={"name": name}).status_code == 201
    only = active_reader("only.syria@example.com", ["syria"])
    active_reader("also.energy@example.com", ["syria", "energy"])
    left = active_reader("left@example.com", ["syria"])
    with db.session_scope() as session:
        session.get(Reader, left).status = "unsubscribed"

    asked = client.post("/api/topics/syria/retire", params={"dry_run": "true"}, headers=AUTH)
    assert asked.json() == {"slug": "syria", "followers": 2, "follow_nothing_else": 1,
                            "retired": False}
    assert offered_slugs(client) == {"syria", "energy"}  # the dry run changed nothing
    done = client.post("/api/topics/syria/retire", headers=AUTH)
    assert done.status_code == 200 and done.json()["retired"] is True
    assert offered_slugs(client) == {"energy"}
    listed = {t["slug"]: t for t in client.get("/api/topics", headers=AUTH).json()}
    assert listed["syria"]["retired"] and listed["syria"]["followers"] == 2

    publish(client, "Aid reaches Idlib", ["Syria"])
    publish(client, "Brent steady", ["Energy"])
    backend.smtp.clear()
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    assert wait_edition(client, r.json()["id"])["counts"]["sent"] == 1, dump_log(backend)
    (message,) = backend.smtp.wait_for(1)
    assert str(message["To"]) == "also.energy@example.com"
    assert "Brent steady" in text_part(message) and "Idlib" not in text_part(message)

    # The reader left with nothing is told so, and keeps the choice until they save.
    with db.session_scope() as session:
        reader = session.get(Reader, only)
        page = client.get(f"/preferences/{tokens.make('preferences', reader.id, reader.email)}")
    assert "No longer offered: <strong><bdi>Syria</bdi></strong>" in page.text
    assert "you will get nothing until you choose one" in page.text
    assert 'value="syria"' not in page.text
    r = post_subscribe(client, email="new@example.com", topics=["syria"], frequency="weekly",
                       consent="yes")
    assert r.status_code == 422  # a retired topic cannot be chosen


def test_the_form_offers_live_topics_in_groups_in_order_with_descriptions(fresh) -> None:
    with db.session_scope() as session:
        for name, group in [("Syria", "Levant"), ("Energy", "Themes"), ("Lebanon", "Levant"),
                            ("Diplomacy", "Themes"), ("Gone", "Levant"), ("Weather", None)]:
            topics.create(session, name, group=group, description=f"All about {name}.")
        topics.update(session, "weather", position=-1)  # first on the form
        topics.retire(session, "gone")
    client = TestClient(create_app())
    page = client.get("/subscribe").text
    legends = re.findall(r"<legend>([^<]+)</legend>", page)
    assert legends[:3] == ["Topics you want to follow", "Levant", "Themes"]
    order = re.findall(r'name="topics" value="([^"]+)"', page)
    assert order == ["weather", "syria", "lebanon", "energy", "diplomacy"]
    assert "All about Lebanon." in page and "Gone" not in page
    levant = page.split("<legend>Levant</legend>")[1].split("</fieldset>")[0]
    assert 'value="syria"' in levant and 'value="energy"' not in levant
    token = form_token(client)
    r = client.post("/subscribe", data={"email": "g@example.com", "topics": ["lebanon"],
                                        "frequency": "weekly", "consent": "yes",
                                        "form_token": token})
    assert r.status_code == 200


def test_articles_name_tags_and_readers_still_follow_topics_by_slug(fresh) -> None:
    """An article's tags are what the editor typed; the topics a reader follows are named by
    their slug on the form and in imports, as before topics."""
    with db.session_scope() as session:
        topics.create(session, "Gulf States", tags=["Gulf", "Qatar"])
        article, created = articles.publish(session, {
            "url": url_of("Doha summit"), "title": "Doha summit", "tags": ["Qatar"]})
        assert created and [t.slug for t in article.tags] == ["qatar"]
    client = TestClient(create_app())
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "a@example.com", "topics": ["gulf-states"]},
        {"email": "b@example.com", "topics": ["Gulf States"]},
        {"email": "c@example.com", "topics": ["qatar"]}])  # a tag, not a topic
    assert r.json()["created"] == 2 and r.json()["errors"] == [
        {"row": 3, "reason": "unknown topic(s): qatar"}]


def test_covering_restoring_and_what_a_change_did(fresh) -> None:
    """The domain steps the console's one-click actions take, and the audit's account."""
    with db.session_scope() as session:
        topic, _ = topics.create(session, "Syria", group="Levant")
        before = topics.to_dict(topic)
        tag_names.get_or_create_tags(session, ["Aleppo"] + [f"t{i}" for i in range(topics.MAX_TAGS)])
        topics.cover(session, "syria", "aleppo")
        topics.cover(session, "syria", "ALEPPO")  # twice: once
        assert topics.changes(before, topics.to_dict(topic)) == {
            "change": "edit", "tags added": "aleppo"}
        assert topics.changes(topics.to_dict(topic), topics.to_dict(topic)) == {}
        with pytest.raises(TopicNotFound):
            topics.cover(session, "syria", "nowhere")
        full, _ = topics.create(session, "Full", tags=[f"t{i}" for i in range(topics.MAX_TAGS)])
        with pytest.raises(TopicError, match="at most 50 tags"):
            topics.cover(session, "full", "aleppo")
        assert [t.slug for t in topics.uncovered_tags(session)] == []
        topics.retire(session, "syria")
        assert topics.count(session) == 1 and topics.count(session, retired=True) == 1
        retired = topics.to_dict(topic)
        topics.restore(session, "syria")
        assert topics.changes(retired, topics.to_dict(topic)) == {"change": "restore"}
        assert [t["slug"] for t in topics.page(session, limit=1, offset=1)] == ["full"]
        assert topics.changes(None, topics.to_dict(full))["change"] == "add"
