"""Reader rights and guards on SQLite: the consent ledger, preferences, pause, export,
erasure, expired links, the form token and the rate limit."""

from __future__ import annotations

import os
import re
import time

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select, text

from newsletter import db, events, tokens
from newsletter.config import CONSENT_TEXT_VERSION, get_settings, reload_settings
from newsletter.editions import planning, reports
from newsletter.editions import requests as editions
from newsletter.editions.selection import readers_page
from newsletter.models import Base, ConsentEvent, Delivery, OutboxEvent, Reader, Suppression
from newsletter.readers import subscriptions
from newsletter.readers.consent import email_hash
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, configure

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UA = {"User-Agent": "Mozilla/5.0 (test reader)"}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    var = tmp_path_factory.mktemp("reader")
    configure(var, f"sqlite:///{var / 'reader.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    c = TestClient(create_app(), headers=UA)
    for n, tags in enumerate([["Syria", "Russia"], ["Jordan"], ["Energy"]]):
        assert c.post("/api/articles", headers=AUTH, json={
            "url": f"https://news.example/a/{n}", "title": f"Story {n}", "summary": "s",
            "tags": tags}).status_code == 201
    for name in ("Syria", "Russia", "Jordan", "Energy"):  # what the editors offer readers
        assert c.post("/api/topics", headers=AUTH, json={"name": name}).status_code == 201
    return c


def form(email: str, **over) -> dict:
    return {"email": email, "topics": ["syria"], "frequency": "weekly", "consent": "yes",
            "form_token": tokens.make_form_token()} | over


def signup(client: TestClient, email: str, topics=("syria",)) -> Reader:
    assert client.post("/subscribe", data=form(email, topics=list(topics))).status_code == 200
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == email))
        assert client.post(f"/confirm/{tokens.make('confirm', reader.id, email)}"
                           ).status_code == 200
        return session.get(Reader, reader.id)


def links(reader: Reader, edition_id: int | None = None) -> dict[str, str]:
    extra = {"e": edition_id} if edition_id else {}
    return {"prefs": f"/preferences/{tokens.make('preferences', reader.id, reader.email)}",
            "unsub": f"/unsubscribe/{tokens.make('unsubscribe', reader.id, reader.email, **extra)}"}


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def ledger(reader_id: int) -> list[ConsentEvent]:
    with db.session_scope() as session:
        return list(session.scalars(select(ConsentEvent).where(
            ConsentEvent.reader_id == reader_id).order_by(ConsentEvent.id)))


def test_the_ledger_holds_every_event_with_its_fields(client) -> None:
    reader = signup(client, "ledger@example.com")
    page = client.get(links(reader)["prefs"]).text
    assert client.post(links(reader)["prefs"], data={
        "topics": ["syria", "jordan"], "frequency": "daily", "pause": "", "csrf": csrf_of(page)}
    ).status_code == 200
    assert client.post(links(reader)["unsub"], data={"reason": "Too many emails"}
                       ).status_code == 200
    entries = ledger(reader.id)
    assert [e.action for e in entries] == ["requested", "confirmed", "changed", "withdrawn"]
    for e in entries:
        assert e.consent_text_version == CONSENT_TEXT_VERSION
        assert e.consent_text_hash == get_settings().consent_text_hash
        assert e.email_hash == email_hash("ledger@example.com")
        assert e.ip == "testclient" and e.user_agent == UA["User-Agent"]
    requested, confirmed, changed, withdrawn = entries
    assert requested.source == "form" and requested.details == {
        "topics": ["syria"], "frequency": "weekly"}
    assert confirmed.method == "link"
    assert changed.method == "preferences" and changed.details == {
        "topics": [["syria"], ["jordan", "syria"]], "frequency": ["weekly", "daily"]}
    assert withdrawn.method == "link" and withdrawn.details == {"reason": "Too many emails"}


def test_withdrawal_names_the_edition_that_carried_the_link(client) -> None:
    reader = signup(client, "attributed@example.com")
    with db.session_scope() as session:
        edition = editions.request(session, "weekly", source="test")
    assert client.post(links(reader, edition.id)["unsub"],
                       files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    withdrawn = ledger(reader.id)[-1]
    assert (withdrawn.action, withdrawn.method, withdrawn.edition_id) == (
        "withdrawn", "one-click", edition.id)
    with db.session_scope() as session:
        assert reports.report(session, edition.id)["counts"]["unsubscribed"] == 1


def test_preferences_post_needs_the_pages_csrf_token(client) -> None:
    reader = signup(client, "csrf@example.com")
    other = signup(client, "csrf-other@example.com")
    body = {"topics": ["energy"], "frequency": "daily", "pause": ""}
    for csrf in ("", "forged", csrf_of(client.get(links(other)["prefs"]).text)):
        r = client.post(links(reader)["prefs"], data=body | {"csrf": csrf})
        assert r.status_code == 403 and "out of date" in r.text
    with db.session_scope() as session:
        unchanged = session.get(Reader, reader.id)
        assert unchanged.frequency == "weekly" and [t.slug for t in unchanged.topics] == ["syria"]
    r = client.post(links(reader)["prefs"],
                    data=body | {"csrf": csrf_of(client.get(links(reader)["prefs"]).text)})
    assert r.status_code == 200 and "Your changes are saved" in r.text


def test_bad_preferences_are_explained_and_change_nothing(client) -> None:
    reader = signup(client, "badprefs@example.com")
    csrf = csrf_of(client.get(links(reader)["prefs"]).text)
    r = client.post(links(reader)["prefs"], data={"topics": [], "frequency": "daily",
                                                  "csrf": csrf})
    assert r.status_code == 422 and "at least one topic" in r.text
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).frequency == "weekly"
    assert [e.action for e in ledger(reader.id)] == ["requested", "confirmed"]


def test_a_paused_reader_is_left_out_until_resumed(client) -> None:
    reader = signup(client, "pause@example.com")
    prefs = links(reader)["prefs"]
    client.post(prefs, data={"topics": ["syria"], "frequency": "weekly", "pause": "4w",
                             "csrf": csrf_of(client.get(prefs).text)})
    with db.session_scope() as session:
        edition = editions.request(session, "weekly", source="test")
        session.flush()
        ids = [r.id for r in readers_page(session, edition, 0, 1000)]
        session.rollback()
    assert reader.id not in ids
    assert "Paused until" in client.get(prefs).text
    client.post(prefs, data={"topics": ["syria"], "frequency": "weekly", "pause": "resume",
                             "csrf": csrf_of(client.get(prefs).text)})
    with db.session_scope() as session:
        edition = editions.request(session, "weekly", source="test")
        session.flush()
        assert reader.id in [r.id for r in readers_page(session, edition, 0, 1000)]
        session.rollback()


def planned_delivery_for(email: str) -> int:
    """Plan a weekly edition here, batches left unsent (no worker in this module)."""
    events.set_dispatcher(lambda *_: False)
    try:
        with db.session_scope() as session:
            edition = editions.request(session, "weekly", source="test")
        with db.session_scope() as session:
            planning.plan(session, edition.id)
    finally:
        events.set_dispatcher(None)
    return edition.id


def test_export_holds_everything_and_erasure_leaves_only_the_hash(client) -> None:
    email = "erase.me@example.com"
    reader = signup(client, email, topics=("syria", "jordan"))
    edition_id = planned_delivery_for(email)

    export = client.get(f"/api/subscribers/{email}", headers=AUTH).json()
    assert export["reader"]["email"] == email and export["reader"]["status"] == "active"
    assert sorted(export["reader"]["topics"]) == ["jordan", "syria"]
    assert [e["action"] for e in export["consent"]] == ["requested", "confirmed"]
    assert export["consent"][0]["ip"] == "testclient"
    [mine] = [d for d in export["deliveries"] if d["edition_id"] == edition_id]
    assert mine["message_id"].startswith("<") and sorted(mine["articles"]) == [
        "https://news.example/a/0", "https://news.example/a/1"]
    data_page = f"/my-data/{tokens.make('data', reader.id, email)}"
    assert client.get(data_page + "/export.json").json()["reader"] == export["reader"]

    assert client.delete(f"/api/subscribers/{email}", headers=AUTH).json() == {"status": "erased"}
    assert client.get(f"/api/subscribers/{email}", headers=AUTH).status_code == 404
    with db.session_scope() as session:
        assert session.scalar(select(Suppression.reason).where(
            Suppression.email_hash == email_hash(email))) == "erased"
        assert session.scalar(select(Delivery.status).where(
            Delivery.edition_id == edition_id, Delivery.reader_id.is_(None))) == "suppressed"
        # Nothing anywhere still holds the address or points at the reader.
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()):
                assert email not in repr(tuple(row)), table.name
        assert session.scalars(select(ConsentEvent).where(
            ConsentEvent.email_hash == email_hash(email))).all() == []
    assert client.get(links(reader)["prefs"]).status_code == 400  # old links are dead

    # Coming back needs a fresh double opt-in; confirming lifts the suppression.
    assert client.post("/subscribe", data=form(email)).status_code == 200
    with db.session_scope() as session:
        again = session.scalar(select(Reader).where(Reader.email == email))
        assert again.status == "pending"
        token = tokens.make("confirm", again.id, email)
    assert client.post(f"/confirm/{token}").status_code == 200
    with db.session_scope() as session:
        assert session.scalar(select(Suppression).where(
            Suppression.email_hash == email_hash(email))) is None


def test_self_service_erasure_needs_confirmation_and_csrf(client) -> None:
    reader = signup(client, "self.erase@example.com")
    prefs = f"/my-data/{tokens.make('data', reader.id, reader.email)}"  # the emailed link
    csrf = csrf_of(client.get(prefs).text)
    assert client.post(prefs + "/erase", data={"csrf": csrf}).status_code == 422
    assert client.post(prefs + "/erase", data={"confirm": "yes", "csrf": "x"}).status_code == 422
    r = client.post(prefs + "/erase", data={"confirm": "yes", "csrf": csrf})
    assert r.status_code == 200 and "deleted" in r.text
    with db.session_scope() as session:
        assert session.get(Reader, reader.id) is None


def old_token(purpose: str, reader: Reader, age_s: int) -> str:
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    return URLSafeTimedSerializer(SECRET_KEY, salt=f"newsletter.{purpose}", signer=Past).dumps(
        {"r": reader.id, "h": tokens.email_tag(reader.email)})


def test_expired_confirm_link_changes_nothing_and_offers_a_new_one(client) -> None:
    assert client.post("/subscribe", data=form("late@example.com")).status_code == 200
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "late@example.com"))
    expired = old_token("confirm", reader, 8 * 86400)
    page = client.get(f"/confirm/{expired}")
    assert page.status_code == 400 and "Send me a new link" in page.text
    assert client.post(f"/confirm/{expired}").status_code == 400
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).status == "pending"
        before = len(session.scalars(select(OutboxEvent).where(
            OutboxEvent.name == events.READER_SUBSCRIBED)).all())
    assert "Check your inbox" in client.post(f"/confirm/{expired}/resend").text
    with db.session_scope() as session:
        after = session.scalars(select(OutboxEvent).where(
            OutboxEvent.name == events.READER_SUBSCRIBED)).all()
        assert len(after) == before + 1 and after[-1].payload == {"reader_id": reader.id}
    assert client.post(f"/confirm/{old_token('confirm', reader, 86400)}").status_code == 200


def test_one_confirmation_email_a_day_per_address(client) -> None:
    with db.session_scope() as session:
        r = session.get(Reader, subscriptions.subscribe(
            session, "bomb@example.com", ["syria"], "daily", consent_given=True))
        assert subscriptions.confirmation_due(r)
        from newsletter.models import utcnow
        r.confirmation_sent_at = utcnow()
        assert not subscriptions.confirmation_due(r)


def test_view_in_browser_for_a_notice(client) -> None:
    with db.session_scope() as session:
        reader = session.get(Reader, subscriptions.subscribe(
            session, "view@example.com", ["syria"], "weekly", consent_given=True))
        session.flush()
        view = tokens.make("view", reader.id, reader.email, t="confirm")
        wrong = tokens.make("preferences", reader.id, reader.email)
    page = client.get(f"/emails/{view}")
    assert page.status_code == 200 and "Confirm my subscription" in page.text
    assert "/confirm/" in page.text and "style=" in page.text
    assert client.get(f"/emails/{wrong}").status_code == 400


@pytest.fixture
def guards_on():
    saved = {k: os.environ.get(k) for k in ("NEWSLETTER_SUBSCRIBE_RATE_LIMIT",
                                            "NEWSLETTER_FORM_MIN_SECONDS")}
    yield os.environ
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reload_settings()


def count_readers() -> int:
    with db.session_scope() as session:
        return session.scalar(text("SELECT count(*) FROM readers"))


def test_rate_limit_per_ip(client, guards_on) -> None:
    guards_on["NEWSLETTER_SUBSCRIBE_RATE_LIMIT"] = "3/minute"
    reload_settings()
    answers = [client.post("/subscribe", data=form(f"burst{n}@example.com"),
                           headers={"X-Test": str(n)}).status_code for n in range(3)]
    before = count_readers()
    r = client.post("/subscribe", data=form("burst4@example.com"))
    assert answers == [200, 200, 200] and r.status_code == 429
    assert count_readers() == before


def test_form_token_guards(client, guards_on) -> None:
    before = count_readers()
    r = client.post("/subscribe", data=form("notoken@example.com", form_token=""))
    assert r.status_code == 422 and "expired" in r.text and "notoken@example.com" in r.text
    guards_on["NEWSLETTER_FORM_MIN_SECONDS"] = "30"
    reload_settings()
    r = client.post("/subscribe", data=form("toofast@example.com"))
    # Too fast for typing, as fast as a browser's autofill: the form again, as sent.
    assert r.status_code == 422 and "send the form again" in r.text
    assert 'value="toofast@example.com"' in r.text
    r = client.post("/subscribe", data=form("honey@example.com", website="https://x"))
    assert r.status_code == 200 and "Check your inbox" in r.text  # a bot is told nothing
    assert count_readers() == before
