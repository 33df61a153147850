"""The console's doors over HTTP (the app's TestClient, each backend): signed out every page
goes to sign-in, every change needs the CSRF token from our own origin, sign-in answers
alike for a wrong address and a wrong password, locks, expires, and never redirects away."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from newsletter import db
from newsletter.models import AuditEntry, Base, ConsoleSession, Editor
from newsletter.web.app import create_app
from tests.conftest import EDITOR_PASSWORD, add_editor, console_client, csrf_of, hidden, sign_in
from tests.test_security import _walk

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def console_routes(methods: set[str]) -> list[tuple[str, str]]:
    """Every console route with the given methods, ids filled in."""
    found = []
    for path, route in _walk(create_app().routes):
        if path == "/admin" or path.startswith("/admin/"):
            for method in sorted(getattr(route, "methods", set()) & methods):
                found.append((method, re.sub(r"\{[^}]+\}", "1", path)))
    return found


def row_counts() -> dict[str, int]:
    with db.session_scope() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables}


def age_sessions(created=timedelta(0), last_seen=timedelta(0)) -> None:
    """Move every session's clock back: as if that much time had passed since."""
    with db.session_scope() as session:
        for row in session.scalars(select(ConsoleSession)):
            row.created_at -= created
            row.last_seen_at -= last_seen


def test_signed_out_every_console_page_redirects_to_sign_in(fresh) -> None:
    client = console_client()
    pages = console_routes({"GET"})
    assert len(pages) >= 8
    for _, path in pages:
        if path == "/admin/login":
            continue
        r = client.get(path + "?page=2")
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/admin/login?next={quote(path + '?page=2', safe='')}"


def test_signed_out_a_change_is_refused(fresh) -> None:
    add_editor("chief@news.example", "admin")
    client = console_client()
    before = row_counts()
    for method, path in console_routes(UNSAFE):
        if path != "/admin/login":
            r = client.request(method, path, data={"email": "x@news.example", "name": "n"})
            assert r.status_code == 403 and "nothing was changed" in r.text, (method, path)
    assert row_counts() == before


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(fresh) -> None:
    add_editor("chief@news.example", "admin")
    desk_id = add_editor("desk@news.example")
    client = console_client()
    sign_in(client, "chief@news.example")
    token = csrf_of(client)
    before = row_counts()
    changes = [(m, p) for m, p in console_routes(UNSAFE) if p != "/admin/login"]
    assert len(changes) >= 6
    for method, path in changes:
        data = {"email": "new@news.example", "role": "admin", "password": "x" * 20,
                "confirm": "x" * 20, "name": "n"}
        for extra, headers in [({}, {}), ({"csrf_token": "forged"}, {}),
                               ({"csrf_token": token}, {"Origin": "https://evil.example"})]:
            r = client.request(method, path, data={**data, **extra}, headers=headers)
            assert r.status_code == 403, (method, path, extra, headers)
    assert row_counts() == before
    # The real thing, for contrast: the token from the page (or htmx's header) works.
    r = client.post("/admin/editors", data={"email": "new@news.example", "role": "editor",
                                            "password": "x" * 20, "csrf_token": token})
    assert r.status_code == 303
    r = client.post(f"/admin/editors/{desk_id}/role", data={"role": "admin"},
                    headers={"X-CSRF-Token": token, "Origin": "https://testserver"})
    assert r.status_code == 303
    with db.session_scope() as session:
        assert session.get(Editor, desk_id).role == "admin"


def test_the_sign_in_form_wants_its_own_token_and_cookie(fresh) -> None:
    add_editor("desk@news.example")
    page = console_client().get("/admin/login").text  # another browser's form
    client = console_client()
    r = client.post("/admin/login", data={"email": "desk@news.example",
                                          "password": EDITOR_PASSWORD,
                                          "csrf_token": hidden(page)})
    assert r.status_code == 403 and "nl_console=" not in r.headers.get("set-cookie", "")


def test_the_session_cookie(fresh) -> None:
    add_editor("desk@news.example")
    r = sign_in(console_client(), "desk@news.example")
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("nl_console="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=lax", "path=/admin"} <= flags  # BASE_URL is https


@pytest.mark.parametrize("target, landing", [
    ("/admin/audit?actor=cli", "/admin/audit?actor=cli"),
    ("https://evil.example/admin", "/admin"), ("//evil.example/admin", "/admin"),
    ("/\\evil.example", "/admin"), ("/admin\\@evil.example", "/admin"), ("/subscribe", "/admin"),
])
def test_after_sign_in_only_a_console_path(fresh, target, landing) -> None:
    add_editor("desk@news.example")
    r = sign_in(console_client(), "desk@news.example", next_=target)
    assert r.status_code == 303 and r.headers["location"] == landing


def test_a_wrong_address_and_a_wrong_password_answer_alike(fresh) -> None:
    add_editor("desk@news.example")
    client = console_client()
    answers = []
    for email in ("desk@news.example", "nobody@news.example"):
        r = sign_in(client, email, "not the password")
        body = re.sub(r'value="[^"]*"', "", r.text)  # the form keeps what was typed
        answers.append((r.status_code, body.replace(email, "")))
    assert answers[0] == answers[1] and answers[0][0] == 401
    assert "The email address or the password is wrong." in answers[0][1]
    r = sign_in(client, "desk@news.example", "not the password")
    assert 'value="desk@news.example"' in r.text  # what was typed is kept


def test_wrong_passwords_lock_the_account_and_say_until_when(fresh) -> None:
    add_editor("desk@news.example")
    client = console_client()
    for _ in range(4):
        assert sign_in(client, "desk@news.example", "not the password").status_code == 401
    r = sign_in(client, "desk@news.example", "not the password")
    assert r.status_code == 429 and "This account is locked" in r.text
    assert re.search(r"Try again after \d\d:\d\d on \d\d \w+ \d{4} \(UTC\)", r.text)
    # From another address, with the right password: still locked.
    r = sign_in(console_client(), "desk@news.example")
    assert r.status_code == 429 and "nl_console=" not in r.headers.get("set-cookie", "")
    with db.session_scope() as session:
        assert session.scalars(select(AuditEntry.action)).all() == ["editor.locked"]


def test_an_idle_session_ends_and_signing_out_ends_it_now(fresh) -> None:
    add_editor("desk@news.example")
    client = console_client()
    sign_in(client, "desk@news.example")
    assert client.get("/admin/audit").status_code == 200
    age_sessions(last_seen=timedelta(minutes=60))  # the clock moves on an hour (the default)
    assert client.get("/admin/audit").status_code == 303
    sign_in(client, "desk@news.example")
    r = client.post("/admin/logout", data={"csrf_token": csrf_of(client)})
    assert r.status_code == 303 and r.headers["location"] == "/admin/login?signed_out=1"
    assert client.get("/admin").status_code == 303
    with db.session_scope() as session:
        assert session.scalar(select(func.count(ConsoleSession.id))) == 0


def test_a_session_ends_twelve_hours_after_sign_in(fresh) -> None:
    add_editor("desk@news.example")
    client = console_client()
    sign_in(client, "desk@news.example")
    # Busy all day: seen a minute ago, signed in 12 hours ago.
    age_sessions(created=timedelta(hours=12), last_seen=timedelta(minutes=1))
    assert client.get("/admin").status_code == 303


def test_an_editor_gets_403_on_admin_pages_and_changes_nothing(fresh) -> None:
    chief_id = add_editor("chief@news.example", "admin")
    add_editor("desk@news.example")
    client = console_client()
    sign_in(client, "desk@news.example")
    token = csrf_of(client)
    before = row_counts()
    assert client.get("/admin/editors").status_code == 403
    r = client.post("/admin/editors", data={"email": "x@news.example", "role": "admin",
                                            "password": "x" * 20, "csrf_token": token})
    assert r.status_code == 403 and "for admins" in r.text
    r = client.post(f"/admin/editors/{chief_id}/role", data={"role": "editor",
                                                             "csrf_token": token})
    assert r.status_code == 403
    assert row_counts() == before
    with db.session_scope() as session:
        assert session.get(Editor, chief_id).role == "admin"


def test_console_pages_send_their_own_headers(fresh) -> None:
    add_editor("desk@news.example")
    client = console_client()
    sign_in(client, "desk@news.example")
    r = client.get("/admin/tokens")
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert r.headers["cache-control"] == "no-store"
    assert "<script>" not in r.text and " style=" not in r.text and " on" not in r.text.split(
        "<body")[1].split(">")[0]
