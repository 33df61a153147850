"""Issue 16, item 11: the sign-up form's token is single-use (its nonce is spent in the
database), a form posted faster than people type is shown again as it was sent (a browser's
autofill is a reader, not a bot), and the honeypot stays silent. Through the real app, on
SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import time

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select, text

from newsletter import db
from newsletter.config import Settings, get_settings, reload_settings
from newsletter.models import ConsentEvent, Reader, utcnow
from newsletter.web.app import create_app
from tests.conftest import form_token, offer_topics


@pytest.fixture
def client(fresh):
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Jordan")
    return TestClient(create_app())


@pytest.fixture
def min_seconds():
    saved = os.environ.get("NEWSLETTER_FORM_MIN_SECONDS")

    def set_to(value: str | None) -> None:
        if value is None:
            os.environ.pop("NEWSLETTER_FORM_MIN_SECONDS", None)
        else:
            os.environ["NEWSLETTER_FORM_MIN_SECONDS"] = value
        reload_settings()

    yield set_to
    set_to(saved)


def fields(email: str, token: str, **over) -> dict:
    return {"email": email, "topics": ["syria", "jordan"], "frequency": "daily",
            "consent": "yes", "form_token": token} | over


def stored() -> tuple[int, int]:
    with db.session_scope() as session:
        return (session.scalar(select(func.count()).select_from(Reader)),
                session.scalar(select(func.count()).select_from(ConsentEvent)))


def test_a_form_token_signs_up_once(client) -> None:
    token = form_token(client)
    assert client.post("/subscribe", data=fields("first@example.com", token)).status_code == 200
    before = stored()
    replay = client.post("/subscribe", data=fields("second@example.com", token))
    assert replay.status_code == 422 and "This form was sent already" in replay.text
    assert 'value="second@example.com"' in replay.text  # what they typed, kept
    assert stored() == before
    # The form shown again carries a fresh token, which works.
    fresh_token = re.search(r'name="form_token" value="([^"]+)"', replay.text).group(1)
    assert fresh_token != token
    again = client.post("/subscribe", data=fields("second@example.com", fresh_token))
    assert again.status_code == 200 and stored()[0] == before[0] + 1


def test_a_token_without_a_nonce_is_refused(client) -> None:
    # What the form served before tokens had a nonce: signed and fresh, but reusable.
    old = URLSafeTimedSerializer(get_settings().secret_key, salt="newsletter.form").dumps(1)
    r = client.post("/subscribe", data=fields("old@example.com", old))
    assert r.status_code == 422 and "expired" in r.text and stored() == (0, 0)


def test_a_spent_nonce_is_kept_until_its_form_would_expire(client) -> None:
    from newsletter.models import FormNonce

    client.post("/subscribe", data=fields("keep@example.com", form_token(client)))
    with db.session_scope() as session:
        (expires_at,) = session.scalars(select(FormNonce.expires_at)).all()
    left = expires_at - utcnow()
    hours = get_settings().form_max_age_hours
    assert hours * 3600 - 60 < left.total_seconds() <= hours * 3600 + 120


def test_too_fast_shows_the_form_again_as_it_was_sent(client, min_seconds) -> None:
    min_seconds("30")
    r = client.post("/subscribe", data=fields("quick@example.com", form_token(client)))
    assert r.status_code == 422 and "Please check your choices and send the form again" in r.text
    assert 'value="quick@example.com"' in r.text
    assert re.search(r'value="syria"\s+checked', r.text)
    assert re.search(r'value="jordan"\s+checked', r.text)
    assert re.search(r'value="daily"[^>]*checked', r.text)
    assert re.search(r'name="consent" value="yes" checked', r.text)
    assert stored() == (0, 0)


def test_the_default_minimum_time_is_two_seconds(client, min_seconds) -> None:
    min_seconds(None)
    assert Settings().form_min_seconds == get_settings().form_min_seconds == 2.0
    token = form_token(client)
    r = client.post("/subscribe", data=fields("autofill@example.com", token))
    assert r.status_code == 422 and stored() == (0, 0)
    token = re.search(r'name="form_token" value="([^"]+)"', r.text).group(1)
    time.sleep(2.1)  # a reader who looks the form over and sends it again
    r = client.post("/subscribe", data=fields("autofill@example.com", token))
    assert r.status_code == 200 and stored() == (1, 1)


def test_the_honeypot_gets_the_answer_of_a_sign_up_and_stores_nothing(client) -> None:
    real = client.post("/subscribe", data=fields("real@example.com", form_token(client)))
    before = stored()
    bot = client.post("/subscribe", data=fields("bot@example.com", form_token(client),
                                                website="https://spam.example"))
    assert bot.status_code == real.status_code == 200 and bot.content == real.content
    assert stored() == before
    with db.session_scope() as session:  # only the real sign-up's token was spent
        assert session.scalar(text("SELECT count(*) FROM form_nonces")) == 1
