"""Links that act on a reader's data (issue 16, item 6).

The preferences and unsubscribe links in every email are long-lived and get forwarded:
whoever holds one may change topics or unsubscribe, never read or erase the reader's data
nor subscribe an unsubscribed reader again. Those take a short-lived link the worker emails
to the address. Through real HTTP, a real worker and the SMTP sink, on each backend.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.config import Settings
from newsletter.models import Reader, utcnow
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, post_subscribe, wait_idle

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "https://news.example"


@pytest.fixture
def client(fresh) -> TestClient:
    c = TestClient(create_app(), headers={"User-Agent": "Mozilla/5.0 (test reader)"})
    r = c.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/seed", "title": "Seed", "summary": "old news",
        "tags": ["Syria", "Energy"], "published_at": (utcnow() - timedelta(days=30)).isoformat()})
    assert r.status_code == 201, r.text
    for name in ("Syria", "Energy"):  # what the editors offer readers
        assert c.post("/api/topics", headers=AUTH, json={"name": name}).status_code == 201
    return c


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def path_in(message, prefix: str) -> str:
    """The path of the first link under ``prefix`` in an email's text."""
    return re.search(rf"{re.escape(BASE)}({prefix}[\w.\-]+)", text_of(message)).group(1)


def join(client: TestClient, smtp, email: str) -> dict[str, str]:
    """Subscribe and confirm as a reader does; the links of their welcome email."""
    assert post_subscribe(client, email=email, topics=["syria"], frequency="weekly",
                          consent="yes").status_code == 200
    [confirmation] = smtp.wait_for(1)
    assert client.post(path_in(confirmation, "/confirm/")).status_code == 200
    welcome = smtp.wait_for(2)[1]
    assert welcome["Subject"].startswith("Welcome")
    smtp.clear()
    unsubscribe = re.search(r"<https://news\.example(/unsubscribe/[^>]+)>",
                            welcome["List-Unsubscribe"]).group(1)
    return {"preferences": path_in(welcome, "/preferences/"), "unsubscribe": unsubscribe}


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def reader(email: str) -> Reader | None:
    with db.session_scope() as session:
        return session.scalar(select(Reader).where(Reader.email == email))


def emailed_data_link(smtp, email: str) -> str:
    [message] = smtp.wait_for(1)
    assert message["To"] == email and "data" in message["Subject"]
    return path_in(message, "/my-data/")


def old_token(purpose: str, who: Reader, age_s: int) -> str:
    """A genuine token signed ``age_s`` seconds ago."""
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    return URLSafeTimedSerializer(SECRET_KEY, salt=f"newsletter.{purpose}", signer=Past).dumps(
        {"r": who.id, "h": tokens.email_tag(who.email)})


def test_a_forwarded_email_cannot_read_or_erase_the_readers_data(client, fresh) -> None:
    email = "forwarded@example.com"
    links = join(client, fresh.smtp, email)
    prefs = links["preferences"]

    # What the holder of a forwarded newsletter tries: no data in any answer.
    for path in (prefs + "/export.json", prefs + "/consent.json"):
        r = client.get(path)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
        assert "Email me a link" in r.text
        for data in ('"consent"', '"deliveries"', "exported_at", "testclient", "Mozilla"):
            assert data not in r.text
    page = client.get(prefs)
    assert page.status_code == 200 and "export.json" not in page.text
    assert "/erase" not in page.text and "Mozilla" not in page.text
    r = client.post(prefs + "/erase", data={"confirm": "yes", "csrf": csrf_of(page.text)})
    assert r.status_code == 200 and "emailed you a link" in r.text
    assert reader(email).status == "active"  # nothing erased

    # They may still change topics and unsubscribe.
    assert client.post(prefs, data={"topics": ["energy"], "frequency": "daily", "pause": "",
                                    "csrf": csrf_of(page.text)}).status_code == 200
    assert [t.slug for t in reader(email).topics] == ["energy"]

    # The link went to the reader's own mailbox, once however often it was asked for.
    assert client.post(prefs + "/data-link", data={"csrf": csrf_of(page.text)}).status_code == 200
    mine = emailed_data_link(fresh.smtp, email)
    wait_idle()
    time.sleep(1)
    assert len(fresh.smtp.messages()) == 1

    data_page = client.get(mine)
    assert data_page.status_code == 200 and "Delete my data" in data_page.text
    assert data_page.headers["referrer-policy"] == "no-referrer"
    export = client.get(mine + "/export.json").json()
    assert export["reader"]["email"] == email and export["consent"][0]["ip"] == "testclient"
    assert client.get(mine + "/consent.json").json()["email"] == email
    csrf = csrf_of(data_page.text)
    assert client.post(mine + "/erase", data={"csrf": csrf}).status_code == 422  # unticked
    assert reader(email) is not None
    r = client.post(mine + "/erase", data={"confirm": "yes", "csrf": csrf})
    assert r.status_code == 200 and "deleted" in r.text
    assert reader(email) is None
    assert client.get(mine).status_code == 400  # the reader is gone: so is the link


def test_an_old_link_cannot_resubscribe_an_unsubscribed_reader(client, fresh) -> None:
    email = "left@example.com"
    links = join(client, fresh.smtp, email)
    r = client.post(links["unsubscribe"], data={"reason": "Too many emails"})
    assert r.status_code == 200 and r.text.count("<form") == 1
    assert "Email me a link to subscribe again" in r.text and "I agree" not in r.text
    assert reader(email).status == "unsubscribed"

    # From the unsubscribe link (the "Unsubscribed by mistake?" form) ...
    r = client.post(f"/resubscribe/{links['unsubscribe'].rsplit('/', 1)[1]}",
                    data={"consent": "yes"})
    assert r.status_code == 200 and "emailed you a link" in r.text
    # ... and by saving preferences, as the page once offered.
    prefs = links["preferences"]
    page = client.get(prefs)
    assert "ask below for a link by email" in page.text
    assert client.post(prefs, data={"topics": ["syria"], "frequency": "weekly", "pause": "",
                                    "consent": "yes", "csrf": csrf_of(page.text)}
                       ).status_code == 200
    assert reader(email).status == "unsubscribed"

    mine = emailed_data_link(fresh.smtp, email)
    data_page = client.get(mine)
    assert "Resubscribe" in data_page.text
    csrf = csrf_of(data_page.text)
    assert client.post(mine + "/resubscribe", data={"csrf": csrf}).status_code == 422
    assert reader(email).status == "unsubscribed"  # consent is asked for again
    r = client.post(mine + "/resubscribe", data={"consent": "yes", "csrf": csrf})
    assert r.status_code == 200 and "Welcome back" in r.text
    assert reader(email).status == "active"


def test_the_emailed_link_expires_after_the_stated_hour(client, fresh) -> None:
    assert Settings().data_link_max_age_minutes == 60  # the default operators get
    email = "expiry@example.com"
    links = join(client, fresh.smtp, email)
    page = client.get(links["preferences"])
    assert "works for 1 hour" in page.text
    assert client.post(links["preferences"] + "/data-link",
                       data={"csrf": csrf_of(page.text)}).status_code == 200
    [message] = fresh.smtp.wait_for(1)
    assert "It works for 1 hour" in text_of(message)

    who = reader(email)
    late = f"/my-data/{old_token('data', who, 61 * 60)}"
    r = client.get(late)
    assert r.status_code == 400 and "expired" in r.text and "Delete my data" not in r.text
    r = client.get(late + "/export.json")
    assert r.status_code == 400 and email not in r.text and "exported_at" not in r.text
    csrf = csrf_of(client.get(f"/my-data/{old_token('data', who, 60)}").text)
    assert client.post(late + "/erase", data={"confirm": "yes", "csrf": csrf}).status_code == 400
    assert reader(email) is not None

    in_time = f"/my-data/{old_token('data', who, 59 * 60)}"
    assert client.get(in_time + "/export.json").json()["reader"]["email"] == email
    # A preferences token of the same age is not a data link.
    prefs_token = old_token("preferences", who, 60)
    assert client.get(f"/my-data/{prefs_token}").status_code == 400


def test_the_admin_api_still_exports_and_erases_for_editors_only(client, fresh) -> None:
    email = "admin.erase@example.com"
    join(client, fresh.smtp, email)
    assert client.get(f"/api/subscribers/{email}").status_code == 401
    assert client.delete(f"/api/subscribers/{email}").status_code == 401
    assert reader(email) is not None
    assert client.get(f"/api/subscribers/{email}", headers=AUTH).json()["reader"]["email"] == email
    assert client.delete(f"/api/subscribers/{email}", headers=AUTH).json() == {
        "status": "erased"}
    assert reader(email) is None
