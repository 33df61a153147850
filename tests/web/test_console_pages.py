"""The console's pages over HTTP (each backend): the audit log's filters, pages and time
zone; editors' accounts; tokens, each seen and revoked only by its owner or an admin."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from newsletter import audit, db
from newsletter.config import reload_settings
from newsletter.models import ApiToken, AuditEntry, Editor
from tests.conftest import add_editor, console_client, csrf_of, sign_in


def actions_on(page: str) -> list[str]:
    return re.findall(r'<td data-label="Action">([^<]+)</td>', page)


def test_the_audit_log_filters_pages_and_shows_local_times(fresh) -> None:
    add_editor("chief@news.example", "admin")
    with db.session_scope() as session:
        for n in range(30):
            audit.record(session, "cli", "article.publish", f"article:{n}", {"title": f"S{n}"})
        entry = audit.record(session, "token:cms", "reader.erase", "reader:9", {})
        entry.at = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
    client = console_client()
    sign_in(client, "chief@news.example")
    first = client.get("/admin/audit").text
    assert len(actions_on(first)) == 25 and "Page 1 of 2" in first
    assert actions_on(first)[0] == "editor.sign_in"  # newest first
    second = client.get("/admin/audit?page=2").text
    assert len(actions_on(second)) == 7 and actions_on(second)[-1] == "reader.erase"
    erased = client.get("/admin/audit?action=reader.erase").text
    assert actions_on(erased) == ["reader.erase"] and "2026-03-01 22:30:00" in erased
    assert actions_on(client.get("/admin/audit?actor=token:cms&since=2026-03-01"
                                 "&until=2026-03-01").text) == ["reader.erase"]
    assert actions_on(client.get("/admin/audit?actor=token:cms&since=2026-03-02").text) == []
    r = client.get("/admin/audit?since=March&actor=cli")
    assert r.status_code == 422 and "is not a date" in r.text
    assert '<option value="cli" selected>' in r.text and 'value="March"' in r.text  # kept
    saved = dict(os.environ)
    os.environ["NEWSLETTER_TIMEZONE"] = "Asia/Beirut"  # UTC+2 in March
    reload_settings()
    try:
        page = client.get("/admin/audit?action=reader.erase").text
        assert "2026-03-02 00:30:00" in page and "Times are in Asia/Beirut" in page
        # A day in the site's zone: 00:30 on 2 March in Beirut is 2 March.
        assert actions_on(client.get("/admin/audit?action=reader.erase&since=2026-03-02"
                                     "&until=2026-03-02").text) == ["reader.erase"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reload_settings()


def test_an_admin_manages_editors_and_each_change_is_audited(fresh) -> None:
    add_editor("chief@news.example", "admin")
    client = console_client()
    sign_in(client, "chief@news.example")
    token = csrf_of(client)
    r = client.post("/admin/editors", data={"email": "Desk@News.example", "role": "editor",
                                            "password": "desk's password!", "csrf_token": token})
    assert r.status_code == 303
    r = client.post("/admin/editors", data={"email": "desk@news.example", "role": "editor",
                                            "password": "desk's password!", "csrf_token": token})
    assert r.status_code == 422 and "already has an account" in r.text
    with db.session_scope() as session:
        desk_id = session.scalar(select(Editor.id).where(Editor.email == "desk@news.example"))
    r = client.post(f"/admin/editors/{desk_id}/password",
                    data={"password": "new password 123", "confirm": "other password 1",
                          "csrf_token": token})
    assert r.status_code == 422 and "differ" in r.text
    assert client.post(f"/admin/editors/{desk_id}/password", data={
        "password": "new password 123", "confirm": "new password 123",
        "csrf_token": token}).status_code == 303
    assert client.post(f"/admin/editors/{desk_id}/role", data={
        "role": "admin", "csrf_token": token}).status_code == 303
    assert "Remove desk@news.example?" in client.get(
        f"/admin/editors/{desk_id}/remove").text  # asked first
    assert client.post(f"/admin/editors/{desk_id}/remove",
                       data={"csrf_token": token}).status_code == 303
    assert "desk@news.example" not in client.get("/admin/editors").text
    with db.session_scope() as session:
        log = [(e.actor, e.action, e.target) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action != "editor.sign_in")
            .order_by(AuditEntry.id))]
    target = f"editor:{desk_id}"
    assert log == [("chief@news.example", action, target) for action in (
        "editor.add", "editor.password", "editor.role", "editor.remove")]


def test_tokens_are_shown_once_and_belong_to_their_owner(fresh) -> None:
    add_editor("chief@news.example", "admin")
    add_editor("desk@news.example")
    add_editor("night@news.example")
    desk, night, chief = console_client(), console_client(), console_client()
    for client, email in ((desk, "desk@news.example"), (night, "night@news.example"),
                          (chief, "chief@news.example")):
        sign_in(client, email)
    r = desk.post("/admin/tokens", data={"name": "desk-cms", "csrf_token": csrf_of(desk)})
    assert r.status_code == 201
    secret = re.search(r'id="new-token">(nlt_[^<]+)<', r.text).group(1)
    assert secret not in desk.get("/admin/tokens").text
    r = desk.post("/admin/tokens", data={"name": "desk-cms", "csrf_token": csrf_of(desk)})
    assert r.status_code == 422 and "already exists" in r.text and 'value="desk-cms"' in r.text
    with db.session_scope() as session:
        token_id = session.scalar(select(ApiToken.id))
    assert "desk-cms" not in night.get("/admin/tokens").text  # not theirs to see
    assert night.get(f"/admin/tokens/{token_id}/revoke").status_code == 403
    assert night.post(f"/admin/tokens/{token_id}/revoke",
                      data={"csrf_token": csrf_of(night)}).status_code == 403
    assert "desk-cms" in chief.get("/admin/tokens").text  # an admin sees everyone's
    assert chief.post(f"/admin/tokens/{token_id}/revoke",
                      data={"csrf_token": csrf_of(chief)}).status_code == 303
    assert desk.get("/api/editions", headers={"Authorization": f"Bearer {secret}"}
                    ).status_code == 401
    with db.session_scope() as session:
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.action.like("token.%")).order_by(AuditEntry.id)).all()
        assert [(e.actor, e.action) for e in entries] == [
            ("desk@news.example", "token.create"), ("chief@news.example", "token.revoke")]
        assert all(secret not in str(e.details) for e in entries)


def test_every_list_is_paginated(fresh) -> None:
    add_editor("chief@news.example", "admin")
    client = console_client()
    sign_in(client, "chief@news.example")
    with db.session_scope() as session:
        chief = session.scalar(select(Editor))
        now = datetime.now(UTC)
        for n in range(26):
            session.add(Editor(email=f"e{n:02d}@news.example", role="editor",
                               password_hash="x", created_at=now - timedelta(days=1)))
            session.add(ApiToken(editor_id=chief.id, name=f"t{n:02d}", token_hash=f"{n:064d}",
                                 prefix="nlt_aaaaaaaa"))
    for path in ("/admin/editors", "/admin/tokens"):
        first = client.get(path).text
        assert "Page 1 of 2" in first and 'href="?page=2"' in first, path
        assert "Page 2 of 2" in client.get(f"{path}?page=2").text
