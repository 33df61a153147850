"""Story links through real HTTP: a digest sent by the real worker, its /r/ links followed
against the app under uvicorn, the counts read back from the database the app flushed to."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from newsletter import click_links, db
from newsletter.config import reload_settings
from newsletter.editions import planning, withdrawal
from newsletter.editions import requests as editions
from newsletter.mail import mailer
from newsletter.models import Article, Delivery, Edition, StoryClicks, Topic, utcnow
from newsletter.sending import batch
from tests.conftest import live_web
from tests.helpers import add_readers, html_part, publish, text_part, url_of, wait_done

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 " \
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
LINK = re.compile(r"https://news\.example/r/[A-Za-z0-9_\-.]+(?:/[A-Za-z0-9_\-.]+)?")


def _links(message) -> list[str]:
    return sorted(set(LINK.findall(html_part(message, raw=True))))


def _path(link: str) -> str:
    return link.removeprefix("https://news.example")


def _counts() -> dict[tuple[int, int, int, int], int]:
    with db.session_scope() as session:
        return {(r.edition_id, r.article_id, r.topic_id, r.delivery_id): r.clicks
                for r in session.scalars(select(StoryClicks))}


def _wait_total(expected: int, timeout: float = 10) -> dict:
    """The counts once they add up to ``expected`` (the app writes them every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = _counts()
        if sum(counts.values()) >= expected:
            return counts
        time.sleep(0.1)
    return _counts()


def _ids(title: str, topic_slug: str) -> tuple[int, int]:
    with db.session_scope() as session:
        return (session.scalar(select(Article.id).where(Article.title == title)),
                session.scalar(select(Topic.id).where(Topic.slug == topic_slug)))


@pytest.fixture
def sent(fresh, dispatcher):
    """A weekly edition sent by the real worker: two Syria readers, one Energy reader."""
    publish("Aid reaches Idlib", ["Syria"])
    publish("Brent steady", ["Energy"])
    publish("Convoy stopped at the border", ["Syria"])
    add_readers({"a@example.com": ["syria"], "b@example.com": ["syria"],
                 "c@example.org": ["energy"]})
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="test").id
    assert wait_done(edition_id)["status"] == "done"
    messages = fresh.smtp.wait_for(3)
    return edition_id, {m["To"]: m for m in messages}


@pytest.fixture
def web(fresh, tmp_path):
    with live_web(tmp_path / "web.log") as base:
        yield base


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"], indirect=True)
def test_story_links_redirect_to_the_story_and_count_each_click_once(sent, web) -> None:
    edition_id, messages = sent
    links = _links(messages["a@example.com"])
    assert len(links) == 2  # two Syria stories; the title, the image and "Read" share a link
    # The plain-text part carries the same links.
    assert set(LINK.findall(text_part(messages["a@example.com"], raw=True))) == set(links)
    # Readers of the same digest get the same links: they name no one.
    assert _links(messages["b@example.com"]) == links
    aid, syria = _ids("Aid reaches Idlib", "syria")
    aid_link = next(link for link in links
                    if click_links.read(_path(link).split("/")[2]).article_id == aid)

    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        for _ in range(3):
            r = client.get(_path(aid_link), follow_redirects=False)
            assert r.status_code == 302
            assert r.headers["location"] == url_of("Aid reaches Idlib")
            assert r.headers["cache-control"] == "no-store"

    counts = _wait_total(3)
    assert counts == {(edition_id, aid, syria, 0): 3}
    time.sleep(2.5)  # two more flushes write nothing twice
    assert _counts() == {(edition_id, aid, syria, 0): 3}


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"], indirect=True)
def test_scanners_are_answered_but_not_counted(sent, web) -> None:
    edition_id, messages = sent
    link = _path(_links(messages["c@example.org"])[0])
    brent, energy = _ids("Brent steady", "energy")
    scanners = [
        ("HEAD", BROWSER),  # a HEAD is a check, never a reader
        ("GET", "Mozilla/5.0 (compatible; BingPreview/1.0b)"),
        ("GET", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        ("GET", "Microsoft Office Existence Discovery"),
        ("GET", ""),  # no agent, seconds after the edition went out
        ("GET", "python-requests/2.32"),
    ]
    with httpx.Client(base_url=web) as client:
        for method, agent in scanners:
            r = client.request(method, link, headers={"User-Agent": agent},
                               follow_redirects=False)
            assert r.status_code == 302, (method, agent)
            assert r.headers["location"] == url_of("Brent steady")
    time.sleep(2.5)
    assert _counts() == {}

    # Long after the edition went out, a request without an agent is a reader's (a privacy
    # browser, a text client); a known scanner still is not.
    with db.session_scope() as session:
        session.execute(update(Edition).where(Edition.id == edition_id)
                        .values(finished_at=utcnow() - timedelta(minutes=10)))
    with httpx.Client(base_url=web) as client:
        assert client.get(link, headers={"User-Agent": ""}).status_code == 302
        assert client.get(link, headers={"User-Agent": "Twitterbot/1.0"}).status_code == 302
    assert _wait_total(1) == {(edition_id, brent, energy, 0): 1}


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_tampered_and_unknown_links_are_404_and_a_withdrawn_story_410(sent, web) -> None:
    edition_id, messages = sent
    links = [_path(link) for link in _links(messages["a@example.com"])]
    token = links[0].split("/")[2]
    payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    # Another article named in a token's payload without our key: the signature fails.
    forged_payload = base64.urlsafe_b64encode(json.dumps([edition_id, 1, 1]).encode()).decode()
    brent, energy = _ids("Brent steady", "energy")
    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        for bad in (f"/r/{payload}.{flipped}", f"/r/{forged_payload.rstrip('=')}.{signature}",
                    "/r/nonsense", f"/r/{token}x", f"/r/{token}/not-a-reader-token"):
            r = client.get(bad, follow_redirects=False)
            assert r.status_code == 404, bad
            assert "location" not in r.headers
        # Signed by us but naming no article: 404, never a redirect somewhere else.
        r = client.get(f"/r/{click_links.story_token(edition_id, 999_999, energy)}",
                       follow_redirects=False)
        assert r.status_code == 404
        # A story withdrawn since: not sent on, not counted.
        with db.session_scope() as session:
            withdrawal.unpublish(session, brent)
        r = client.get(_path(_links(messages["c@example.org"])[0]), follow_redirects=False)
        assert r.status_code == 410
        assert "withdrawn" in r.text
    time.sleep(2.5)
    assert _counts() == {}


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_an_aggregate_token_names_the_edition_story_and_topic_and_no_reader(sent) -> None:
    edition_id, messages = sent
    syria_stories = {_ids("Aid reaches Idlib", "syria")[0],
                     _ids("Convoy stopped at the border", "syria")[0]}
    syria = _ids("Aid reaches Idlib", "syria")[1]
    decoded = []
    for link in _links(messages["a@example.com"]):
        path = _path(link)
        assert path.count("/") == 2  # /r/TOKEN: no reader part
        payload = path.split("/")[2].split(".")[0]
        decoded.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        assert click_links.read(path.split("/")[2]).delivery_id is None
    # Exactly the edition, the story and the topic: nothing else rides in the payload.
    assert sorted(decoded) == sorted([edition_id, a, syria] for a in syria_stories)


def _send_in_process(fresh, dispatcher, monkeypatch, mode: str) -> tuple[int, dict]:
    """An edition planned and sent in this process with CLICK_TRACKING=``mode`` (the worker
    of the module runs with the default)."""
    monkeypatch.setenv("NEWSLETTER_CLICK_TRACKING", mode)
    reload_settings()
    dispatcher.accept()  # nothing for the module's worker: this process sends
    publish("Aid reaches Idlib", ["Syria"])
    add_readers({"a@example.com": ["syria"], "b@example.com": ["syria"]})
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="test").id
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    with db.session_scope() as session:
        ids = list(session.scalars(select(Delivery.id).where(Delivery.edition_id == edition_id)))
    from newsletter.config import get_settings

    with db.session_scope() as session, \
            mailer.SmtpTransport(mailer.SmtpConfig.from_url(get_settings().smtp)) as smtp:
        batch.send_batch(session, ids, smtp)
    return edition_id, {m["To"]: m for m in fresh.smtp.wait_for(2)}


@pytest.fixture
def settings_back(monkeypatch):
    yield monkeypatch
    monkeypatch.undo()
    reload_settings()


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_off_mode_links_straight_to_the_story(fresh, dispatcher, settings_back) -> None:
    _, messages = _send_in_process(fresh, dispatcher, settings_back, "off")
    for message in messages.values():
        assert "/r/" not in html_part(message, raw=True)
        assert "/r/" not in text_part(message, raw=True)
        assert f'href="{url_of("Aid reaches Idlib")}"' in html_part(message)


@pytest.mark.parametrize("backend", ["postgres_redis"], indirect=True)
def test_reader_mode_counts_per_delivery_and_the_consent_text_says_so(
        fresh, dispatcher, settings_back, tmp_path) -> None:
    edition_id, messages = _send_in_process(fresh, dispatcher, settings_back, "reader")
    a, b = _links(messages["a@example.com"]), _links(messages["b@example.com"])
    assert len(a) == len(b) == 1 and a != b
    # The shared story part is the same; each reader's own part follows it.
    assert a[0].rsplit("/", 1)[0] == b[0].rsplit("/", 1)[0]
    aid, syria = _ids("Aid reaches Idlib", "syria")
    with db.session_scope() as session:
        delivery_of = dict(session.execute(
            select(Delivery.reader_id, Delivery.id)
            .where(Delivery.edition_id == edition_id)).tuples().all())
        readers = {m: session.scalar(select(Delivery.reader_id).where(
            Delivery.id == click_links.read(*_path(link[0]).split("/")[2:]).delivery_id))
            for m, link in (("a", a), ("b", b))}
    assert readers["a"] != readers["b"]
    with live_web(tmp_path / "web.log", NEWSLETTER_CLICK_TRACKING="reader") as base, \
            httpx.Client(base_url=base, headers={"User-Agent": BROWSER}) as client:
        for _ in range(2):
            r = client.get(_path(a[0]), follow_redirects=False)
            assert r.status_code == 302 and r.headers["location"] == url_of("Aid reaches Idlib")
        # A reader part from another edition's delivery does not fit this story token.
        other = click_links.reader_part(10_000_000)
        assert client.get(_path(a[0]).rsplit("/", 1)[0] + other,
                          follow_redirects=False).status_code == 404
        assert "records which stories I open" in client.get("/subscribe").text
    counts = _wait_total(2)
    assert counts == {(edition_id, aid, syria, delivery_of[readers["a"]]): 2}


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@pytest.mark.parametrize(("mode", "says"), [
    ("aggregate", "The count does not say who opened it"),
    ("reader", "we record that you opened it, with your subscription"),
    ("off", "Links in our emails go straight to the stories"),
])
def test_the_preference_centre_says_what_is_counted_in_the_sites_mode(
        fresh, settings_back, mode, says) -> None:
    from fastapi.testclient import TestClient

    from newsletter import tokens
    from newsletter.web.app import create_app

    settings_back.setenv("NEWSLETTER_CLICK_TRACKING", mode)
    reload_settings()
    reader_id = add_readers({"a@example.com": ["syria"]})["a@example.com"]
    page = TestClient(create_app()).get(
        f"/preferences/{tokens.make('preferences', reader_id, 'a@example.com')}")
    assert page.status_code == 200
    assert "What we count" in page.text and says in page.text
    assert "whether you opened an email" in page.text  # opens: never
