"""The reader's language from the sign-up form, on both databases (PostgreSQL writes it in
subscribe()'s one statement, SQLite in its upsert): stored for a new reader, taken from the
latest form while they are not active, never changed for an active reader by a stranger's
form, and kept when a caller names none (the API, imports)."""

from __future__ import annotations

from newsletter import db
from newsletter.models import Reader
from newsletter.readers import subscriptions
from tests.conftest import offer_topics


def _sign_up(email: str, locale: str | None) -> int:
    with db.session_scope() as session:
        reader_id = subscriptions.subscribe(session, email, ["syria"], "weekly",
                                            consent_given=True, locale=locale)
        session.commit()
    return reader_id


def _locale(reader_id: int) -> str | None:
    with db.session_scope() as session:
        return session.get(Reader, reader_id).locale


def test_the_form_language_is_the_readers_until_they_are_active(fresh) -> None:
    with db.session_scope() as session:
        offer_topics(session, "Syria")
        session.commit()
    reader = _sign_up("lang@example.com", "ar")
    assert _locale(reader) == "ar"
    assert _sign_up("lang@example.com", None) == reader and _locale(reader) == "ar"
    assert _sign_up("lang@example.com", "en") == reader and _locale(reader) == "en"
    with db.session_scope() as session:
        session.get(Reader, reader).status = "active"
        session.commit()
    _sign_up("lang@example.com", "ar")  # anybody can type an address into the form
    assert _locale(reader) == "en"
    assert _locale(_sign_up("nolang@example.com", None)) is None  # the site's LANGUAGE
