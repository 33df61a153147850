"""Editor accounts on each backend: argon2 passwords, session expiry and sign-in throttling at
the defaults operators get (a clock passed in, never a sleep), the last admin."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from newsletter import audit, db
from newsletter.accounts import api_tokens, editors, sessions, signin
from newsletter.config import get_settings
from newsletter.errors import AccountError, LastAdmin
from newsletter.models import AuditEntry, Base, ConsoleSession, Editor, utcnow
from tests.conftest import EDITOR_PASSWORD, _fresh_postgres, add_editor


def attempt(email: str, password: str, now, address: str):
    with db.session_scope() as session:
        outcome = signin.attempt(session, email, password, address=address, ip=address,
                                 user_agent="pytest", now=now)
        return outcome.refused, outcome.until, outcome.token


def fresh_address() -> str:
    return f"192.0.2.{secrets.randbelow(250) + 1}-{secrets.token_hex(3)}"


def test_defaults_are_the_documented_ones() -> None:
    settings = get_settings()
    assert (settings.console_idle_minutes, settings.console_session_hours) == (60, 12)
    assert (settings.login_max_failures, settings.login_lock_minutes) == (5, 15)
    assert settings.login_address_limit == "20/15minutes"


def test_passwords_are_argon2_and_nowhere_in_clear(fresh) -> None:
    add_editor("ann@news.example", "admin")
    with db.session_scope() as session:
        hashed = session.scalar(select(Editor.password_hash))
        assert hashed.startswith("$argon2id$")
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()):
                assert EDITOR_PASSWORD not in repr(tuple(row)), table.name


@pytest.mark.parametrize("bad", ["short", "x" * 257])
def test_a_weak_or_absurd_password_is_refused(fresh, bad) -> None:
    with pytest.raises(AccountError), db.session_scope() as session:
        editors.add(session, "ann@news.example", "editor", bad)
    with db.session_scope() as session:
        assert session.scalar(select(Editor.id)) is None


def test_a_session_ends_after_an_idle_hour(fresh) -> None:
    add_editor("ann@news.example")
    t0 = utcnow()
    refused, _, token = attempt("ann@news.example", EDITOR_PASSWORD, t0, fresh_address())
    assert refused is None and token
    with db.session_scope() as session:
        assert sessions.find(session, token, t0 + timedelta(minutes=59)) is not None
    with db.session_scope() as session:  # last seen at 59 min: alive until 1 h 59 min
        assert sessions.find(session, token, t0 + timedelta(minutes=118)) is not None
    with db.session_scope() as session:  # last seen at 118 min; 60 min idle later: gone
        assert sessions.find(session, token, t0 + timedelta(minutes=178)) is None
    with db.session_scope() as session:
        assert session.scalar(select(ConsoleSession.id)) is None  # and its row deleted


def test_a_session_ends_twelve_hours_after_sign_in_however_busy(fresh) -> None:
    add_editor("ann@news.example")
    t0 = utcnow()
    _, _, token = attempt("ann@news.example", EDITOR_PASSWORD, t0, fresh_address())
    for minutes in range(30, 12 * 60, 30):  # a request every half hour, all day
        with db.session_scope() as session:
            assert sessions.find(session, token, t0 + timedelta(minutes=minutes)) is not None
    with db.session_scope() as session:
        assert sessions.find(session, token, t0 + timedelta(hours=12)) is None


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(fresh) -> None:
    add_editor("ann@news.example")
    t0, address = utcnow(), fresh_address()
    for n in range(4):
        assert attempt("ann@news.example", "wrong password!", t0 + timedelta(minutes=n),
                       address)[0] == "wrong"
    refused, until, _ = attempt("ann@news.example", "wrong password!", t0 + timedelta(minutes=4),
                                address)
    assert refused == "account" and until == t0 + timedelta(minutes=19)
    # Locked: the right password is refused too, and the answer says until when.
    refused, until2, token = attempt("ann@news.example", EDITOR_PASSWORD,
                                     t0 + timedelta(minutes=18), address)
    assert (refused, until2, token) == ("account", until, None)
    refused, _, token = attempt("ann@news.example", EDITOR_PASSWORD,
                                t0 + timedelta(minutes=19, seconds=1), address)
    assert refused is None and token


def test_failures_spread_wider_than_the_window_never_lock(fresh) -> None:
    add_editor("ann@news.example")
    t0, address = utcnow(), fresh_address()
    for n in range(8):  # one wrong password every 16 minutes
        assert attempt("ann@news.example", "wrong password!", t0 + timedelta(minutes=16 * n),
                       address)[0] == "wrong"
    assert attempt("ann@news.example", EDITOR_PASSWORD, t0 + timedelta(minutes=16 * 8),
                   address)[0] is None


def test_a_wrong_address_and_a_wrong_password_answer_alike(fresh) -> None:
    add_editor("ann@news.example")
    address = fresh_address()
    assert attempt("nobody@news.example", "wrong password!", utcnow(), address)[:2] == \
        attempt("ann@news.example", "wrong password!", utcnow(), address)[:2] == ("wrong", None)


def test_twenty_failures_from_one_address_stop_it_for_every_account(fresh) -> None:
    add_editor("ann@news.example")
    address = fresh_address()
    for n in range(20):  # guessing across accounts, one try each
        assert attempt(f"guess{n}@news.example", "wrong password!", utcnow(), address)[0] == "wrong"
    refused, until, token = attempt("ann@news.example", EDITOR_PASSWORD, utcnow(), address)
    assert refused == "address" and token is None
    assert utcnow() < until <= utcnow() + timedelta(minutes=15, seconds=1)
    # Another address is not held back, and the account itself is not locked.
    assert attempt("ann@news.example", EDITOR_PASSWORD, utcnow(), fresh_address())[0] is None


def test_the_last_admin_stays(fresh) -> None:
    add_editor("ann@news.example", "admin")
    add_editor("bob@news.example", "editor")
    with pytest.raises(LastAdmin), db.session_scope() as session:
        editors.remove(session, editors.by_email(session, "ann@news.example"))
    with pytest.raises(LastAdmin), db.session_scope() as session:
        editors.set_role(session, editors.by_email(session, "ann@news.example"), "editor")
    with db.session_scope() as session:
        editors.set_role(session, editors.by_email(session, "bob@news.example"), "admin")
    with db.session_scope() as session:
        editors.remove(session, editors.by_email(session, "ann@news.example"))
        assert [e.email for e in editors.active(session)] == ["bob@news.example"]


def test_removal_signs_out_and_revokes_and_the_address_can_come_back(fresh) -> None:
    add_editor("ann@news.example", "admin")
    add_editor("bob@news.example")
    _, _, session_token = attempt("bob@news.example", EDITOR_PASSWORD, utcnow(), fresh_address())
    with db.session_scope() as session:
        api_token, _ = api_tokens.create(session, editors.by_email(session, "bob@news.example"))
    with db.session_scope() as session:
        editors.remove(session, editors.by_email(session, "bob@news.example"))
    with db.session_scope() as session:
        assert sessions.find(session, session_token) is None
        assert api_tokens.authenticate(session, api_token) is None
        assert editors.find(session, "bob@news.example") is None
    with db.session_scope() as session:
        back = editors.add(session, "Bob@News.example", "editor", "another long password")
        assert back.email == "bob@news.example" and back.removed_at is None


def test_api_tokens_are_kept_as_hashes_with_unique_names(fresh) -> None:
    add_editor("ann@news.example")
    with db.session_scope() as session:
        ann = editors.by_email(session, "ann@news.example")
        token, row = api_tokens.create(session, ann, "cms")
        assert token.startswith("nlt_") and row.prefix == token[:12]
        assert token not in repr(tuple(session.execute(text("SELECT * FROM api_tokens")).one()))
        with pytest.raises(AccountError, match="already exists"):
            api_tokens.create(session, ann, "cms")
        with pytest.raises(AccountError):
            api_tokens.create(session, ann, "<script>")
    with db.session_scope() as session:
        assert api_tokens.authenticate(session, token).name == "cms"
        assert api_tokens.authenticate(session, token[:-1] + "x") is None


def test_the_audit_log_refuses_update_and_delete_on_postgresql() -> None:
    url, drop = _fresh_postgres()
    try:
        db.upgrade(url)
        with db.session_scope(url) as session:
            audit.record(session, "cli", "editor.add", "editor:1", {"email": "a@b.example"})
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"), db.session_scope(url) as session:
                session.execute(text(statement))
        with db.session_scope(url) as session:
            assert session.scalars(select(AuditEntry.actor)).all() == ["cli"]
    finally:
        db.dispose_engines()
        drop()
