"""Issue 19, item 1: the sign-up box other sites frame (/embed/subscribe) and its script
(/embed.js), through the real app on each backend with a real worker. The box is framed
only by EMBED_ORIGINS (every other page never), takes POST /subscribe's one path (form
token, honeypot, minimum seconds, rate limit, double opt-in, one answer for every address)
and answers inside itself; what the site puts in ?topics= is data, never markup. The console
shows the snippet to paste."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from newsletter import db, tokens
from newsletter.config import Settings, reload_settings
from newsletter.models import ConsentEvent, Reader
from newsletter.newsroom import topics
from newsletter.readers import subscriptions
from newsletter.web.app import create_app
from tests.conftest import add_editor, console_client, offer_topics, sign_in

SITE = "https://www.news.example"
BOX = "/embed/subscribe?topics=syria,russia"


@pytest.fixture
def settings(monkeypatch):
    """Set NEWSLETTER_* variables for one test; the app made after sees them."""

    def set_(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(f"NEWSLETTER_{name}", value)
        reload_settings()

    yield set_
    monkeypatch.undo()
    reload_settings()


@pytest.fixture
def newsroom(fresh):
    """Topics on offer: Syria and Russia (an article's), Jordan, and Iraq, retired."""
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Russia", "Jordan", "Iraq")
        topics.retire(session, "iraq")
    return fresh


def client() -> TestClient:
    return TestClient(create_app())


def token_of(page: str) -> str:
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def fields(address: str, token: str, **over) -> dict:
    return {"email": address, "topics": ["syria", "russia"], "frequency": "daily",
            "consent": "yes", "form_token": token, "timezone": "Asia/Amman"} | over


def stored() -> tuple[int, int]:
    with db.session_scope() as session:
        return (session.scalar(select(func.count()).select_from(Reader)),
                session.scalar(select(func.count()).select_from(ConsentEvent)))


def policy(response) -> str:
    return response.headers["content-security-policy"]


# ---------------------------------------------------------------- who may frame it

def test_the_box_is_framed_by_the_listed_origins_only_and_no_other_page_is(newsroom,
                                                                           settings) -> None:
    settings(EMBED_ORIGINS=f"{SITE}, http://127.0.0.2:8080")
    c = client()
    box = c.get(BOX)
    assert box.status_code == 200
    assert policy(box).endswith(f"frame-ancestors {SITE} http://127.0.0.2:8080")
    # Its own scripts (time zone, height) and nothing inline.
    assert "script-src 'self'" in policy(box) and "unsafe-inline" not in policy(box)
    answer = c.post(BOX, data=fields("reader@example.com", token_of(box.text)))
    assert answer.status_code == 200 and policy(answer) == policy(box)
    for path in ("/subscribe", "/", "/admin/login", "/preferences/x", "/embed.js"):
        assert policy(c.get(path)).endswith("frame-ancestors 'none'"), path


def test_by_default_the_box_is_framed_nowhere(newsroom) -> None:
    # What an operator gets who never set EMBED_ORIGINS.
    box = client().get(BOX)
    assert box.status_code == 200 and policy(box).endswith("frame-ancestors 'none'")


@pytest.mark.parametrize("origins", [
    "https://www.news.example/", "https://www.news.example/articles", "*", "'self'",
    "https://*.news.example", "www.news.example", "ftp://news.example",
    "https://news.example:99999", "https://news.example; script-src *", "javascript:alert(1)"])
def test_an_origin_that_is_not_scheme_host_port_stops_the_start(origins, settings) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(EMBED_ORIGINS=f"https://ok.example,{origins}")
    assert "EMBED_ORIGINS" in str(refused.value) and "scheme://host[:port]" in str(refused.value)


def test_origins_are_taken_as_a_list_or_json_and_the_old_setting_is_refused(settings) -> None:
    settings(EMBED_ORIGINS='["https://A.example:8443", "http://[::1]:8000"]')
    assert Settings().embed_origins == ["https://a.example:8443", "http://[::1]:8000"]
    with pytest.raises(ValidationError, match="FRAME_ANCESTORS is replaced by EMBED_ORIGINS"):
        settings(FRAME_ANCESTORS="https://www.news.example")


# ---------------------------------------------------------------- what it offers

def checked(page: str) -> list[str]:
    return re.findall(r'name="topics" value="([^"]+)" checked', page)


def offered(page: str) -> list[str]:
    return re.findall(r'name="topics" value="([^"]+)"', page)


def test_the_article_topics_come_ticked_others_folded_unknown_and_retired_left_out(
        newsroom) -> None:
    page = client().get("/embed/subscribe?topics=russia,atlantis,iraq,syria").text
    assert checked(page) == ["syria", "russia"]  # in the form's order
    assert offered(page) == ["syria", "russia", "jordan"]  # Iraq is retired
    folded = page[page.index("<details"):page.index("</details>")]
    assert "<details class=\"more-topics\">" in folded and 'value="jordan"' in folded
    assert "Follow <bdi>Syria</bdi> and <bdi>Russia</bdi> by email" in page  # names isolated
    assert 'action="/embed/subscribe?topics=syria,russia&amp;lang=en"' in page  # what was understood
    assert 'name="timezone"' in page and '<script src="/static/embed-box.js"' in page


def test_without_a_known_topic_the_box_shows_every_topic_unticked(newsroom) -> None:
    page = client().get("/embed/subscribe?topics=atlantis").text
    assert checked(page) == [] and offered(page) == ["syria", "russia", "jordan"]
    assert "<details class=\"more-topics\" open>" in page
    assert 'action="/embed/subscribe?lang=en"' in page


@pytest.mark.parametrize("topics_param", [
    '"><script>alert(1)</script>', "syria,<img src=x onerror=alert(1)>",
    "syria'\"><svg/onload=alert(1)>", "javascript:alert(1)", "syria%0d%0aSet-Cookie:x=1"])
def test_markup_in_the_topics_parameter_is_never_markup(newsroom, topics_param) -> None:
    c = client()
    answer = c.get("/embed/subscribe", params={"topics": topics_param})
    assert answer.status_code == 200
    text = answer.text
    assert "<script>alert" not in text and "<img" not in text and "<svg" not in text
    assert "onerror" not in text and "onload" not in text and "javascript:" not in text
    assert "set-cookie" not in answer.headers
    # Posted back to an address with it: still data, and the sign-up is refused as it
    # would be on the page (only the query string differs).
    posted = c.post("/embed/subscribe", params={"topics": topics_param},
                    data=fields("x@example.com", token_of(text), topics=[topics_param]))
    assert posted.status_code == 422 and "<script>alert" not in posted.text
    assert "<img" not in posted.text and "Unknown topic" in unescape(posted.text)


# ---------------------------------------------------------------- the same path as /subscribe

def sign_up(c: TestClient, address: str, **over):
    return c.post(BOX, data=fields(address, token_of(c.get(BOX).text), **over))


def test_one_answer_for_every_address_in_the_box_and_a_pending_reader(newsroom) -> None:
    c = client()
    new = sign_up(c, "new@example.com")
    pending = sign_up(c, "new@example.com")
    with db.session_scope() as session:
        for email, status in (("active@example.com", "active"), ("gone@example.com",
                                                                  "unsubscribed")):
            row = session.get(Reader, subscriptions.subscribe(
                session, email, ["syria"], "weekly", consent_given=True))
            row.status = status
    active, gone = sign_up(c, "active@example.com"), sign_up(c, "gone@example.com")
    answers = {(r.status_code, r.text) for r in (new, pending, active, gone)}
    assert len(answers) == 1 and new.status_code == 200
    assert "Check your inbox" in new.text and "embed-box" in new.text  # inside the box
    assert "masthead" not in new.text  # not the page's answer
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "new@example.com"))
        assert (reader.status, reader.frequency, reader.source) == ("pending", "daily", "embed")
        assert sorted(t.slug for t in reader.topics) == ["russia", "syria"]
        asked = session.scalars(select(ConsentEvent).where(
            ConsentEvent.reader_id == reader.id)).all()
        assert [(e.action, e.source) for e in asked][:1] == [("requested", "embed")]
        active = session.scalar(select(Reader).where(Reader.email == "active@example.com"))
        assert active.status == "active"  # left alone


def test_the_box_sends_the_confirmation_email_of_the_page(newsroom) -> None:
    assert sign_up(client(), "confirm.me@example.com").status_code == 200
    mail = mail_to(newsroom.smtp, "confirm.me@example.com")
    assert "/confirm/" in mail.get_body(("plain",)).get_content()


def mail_to(smtp, address: str, timeout: float = 60):
    """The first message the SMTP server received for ``address`` (an earlier test's late
    confirmation may arrive first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in smtp.messages():
            if str(message["To"]) == address:
                return message
        time.sleep(0.1)
    raise AssertionError(f"no message to {address}: {[str(m['To']) for m in smtp.messages()]}")


@pytest.mark.parametrize("bad, message", [
    ({"email": "not-an-address"}, "valid email"), ({"topics": []}, "at least one topic"),
    ({"frequency": "hourly"}, "immediate, daily or weekly"), ({"consent": ""}, "tick the box")])
def test_bad_input_is_explained_in_the_box_keeps_what_was_typed_and_changes_nothing(
        newsroom, bad, message) -> None:
    before = stored()
    r = sign_up(client(), "typed@example.com", **bad)
    assert r.status_code == 422 and message in r.text and "embed-box" in r.text
    if "email" not in bad:
        assert 'value="typed@example.com"' in r.text
    assert 'action="/embed/subscribe?topics=syria,russia&amp;lang=en"' in r.text  # still the article's
    assert stored() == before


def test_the_honeypot_gets_the_same_answer_and_stores_nothing(newsroom) -> None:
    c = client()
    real = sign_up(c, "real@example.com")
    before = stored()
    bot = sign_up(c, "bot@example.com", website="http://spam.example")
    assert (bot.status_code, bot.text) == (real.status_code, real.text)
    assert stored() == before


def test_a_form_token_signs_up_once_from_the_box_too(newsroom) -> None:
    c = client()
    token = token_of(c.get(BOX).text)
    assert c.post(BOX, data=fields("first@example.com", token)).status_code == 200
    before = stored()
    replay = c.post(BOX, data=fields("second@example.com", token))
    assert replay.status_code == 422 and "This form was sent already" in replay.text
    assert stored() == before
    # A token the page served is as good in the box (one kind of form), once.
    page_token = token_of(c.get("/subscribe").text)
    assert c.post(BOX, data=fields("third@example.com", page_token)).status_code == 200
    assert c.post("/subscribe", data=fields("fourth@example.com",
                                            page_token)).status_code == 422


def test_the_default_minimum_seconds_holds_in_the_box(newsroom, settings, monkeypatch) -> None:
    # The tests' configuration turns it off (conftest.configure); operators get 2 seconds.
    monkeypatch.delenv("NEWSLETTER_FORM_MIN_SECONDS")
    settings()
    c = client()
    page = c.get(BOX).text
    r = c.post(BOX, data=fields("quick@example.com", token_of(page)))
    assert r.status_code == 422 and "Please check your choices" in r.text
    assert 'value="quick@example.com"' in r.text and "embed-box" in r.text
    assert stored() == (0, 0)


def test_the_box_and_the_page_share_one_rate_limit(newsroom, settings) -> None:
    # A spec of its own: its counters start at zero whatever other tests counted.
    settings(SUBSCRIBE_RATE_LIMIT="2/37minutes")
    c = client()
    page = c.get("/subscribe").text
    assert c.post("/subscribe", data=fields("p@example.com", token_of(page))).status_code == 200
    assert sign_up(c, "b1@example.com").status_code == 200
    before = stored()
    over = sign_up(c, "b2@example.com")
    assert over.status_code == 429 and "Too many attempts" in over.text
    assert "embed-box" in over.text and stored() == before
    page = c.get("/subscribe").text
    assert c.post("/subscribe", data=fields("p2@example.com", token_of(page))).status_code == 429


def test_the_default_rate_limit_holds_in_the_box(newsroom, settings, monkeypatch) -> None:
    # What operators get (10 a minute per client); the tests' configuration turns it off.
    monkeypatch.delenv("NEWSLETTER_SUBSCRIBE_RATE_LIMIT")
    settings()
    # A client address of its own: no other test's hits share its counter.
    c = TestClient(create_app(), client=("198.51.100.77", 50000))
    answers = [sign_up(c, f"r{n}@example.com").status_code for n in range(11)]
    assert answers == [200] * 10 + [429]


# ---------------------------------------------------------------- the site's script

def test_the_sizing_script_trusts_our_origin_only(newsroom, settings) -> None:
    settings(BASE_URL="https://newsletter.news.example/some/path")
    r = client().get("/embed.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert 'var ORIGIN = "https://newsletter.news.example";' in r.text
    assert "event.origin !== ORIGIN" in r.text and "max-age=" in r.headers["cache-control"]


# ---------------------------------------------------------------- the console's snippet

def snippet_in(page: str) -> str:
    return unescape(re.search(r'<textarea id="box-snippet"[^>]*>(.*?)</textarea>', page,
                              re.S).group(1))


def test_the_console_shows_the_snippet_for_a_topic_and_for_a_chosen_set(newsroom) -> None:
    add_editor("desk@news.example")
    c = console_client()
    assert sign_in(c, "desk@news.example").status_code == 303
    topic_page = c.get("/admin/topics/syria").text
    assert snippet_in(topic_page) == (
        '<iframe src="https://news.example/embed/subscribe?topics=syria" '
        'title="Newsletter sign-up" width="100%" height="640" '
        'style="border:0;max-width:32rem"></iframe>\n'
        '<script src="https://news.example/embed.js" async></script>')
    assert 'data-copy="box-snippet" hidden' in topic_page and "/static/console/copy.js" in topic_page
    listing = c.get("/admin/topics").text
    assert 'name="box" value="jordan"' in listing and "box-snippet" not in listing
    chosen = c.get("/admin/topics", params=[("box", "russia"), ("box", "syria"),
                                             ("box", "iraq"), ("box", "<b>x</b>")]).text
    assert "/embed/subscribe?topics=syria,russia&#34;" in chosen  # retired Iraq left out
    assert "<b>x</b>" not in chosen
    assert re.findall(r'name="box" value="([^"]+)" checked', chosen) == ["syria", "russia"]
    none = c.get("/admin/topics", params={"box": "iraq"}).text
    assert "Tick at least one topic" in none and "box-snippet" not in none
    assert "Sign-up box" not in c.get("/admin/topics/iraq").text  # retired: no box


def test_a_form_token_is_needed_in_the_box(newsroom) -> None:
    r = client().post(BOX, data=fields("t@example.com", tokens.make_form_token()[:-3] + "xyz"))
    assert r.status_code == 422 and "This form has expired" in r.text and stored() == (0, 0)


def test_the_box_speaks_the_readers_language(newsroom) -> None:
    # Framed on an Arabic article page (?lang=ar) the box is Arabic and right to left, its
    # topic names isolated, and its form posts back in Arabic.
    page = client().get("/embed/subscribe?topics=syria&lang=ar").text
    assert '<html lang="ar" dir="rtl">' in page
    assert "اشترك" in page and "Sign up" not in page
    assert 'lang=ar"' in page.split('<form method="post"', 1)[1].split(">", 1)[0]
