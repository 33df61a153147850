"""The admin API's callers and roles over HTTP (each backend): ADMIN_TOKEN acts as an
admin, an editor's token with its editor's role, a console cookie is no credential; a role
too low gets 403 and changes nothing; every change is in the audit log, readers by id."""

from __future__ import annotations

from sqlalchemy import func, select

from newsletter import db
from newsletter.accounts import api_tokens, editors
from newsletter.models import AuditEntry, Base, Reader
from tests.conftest import ADMIN_TOKEN, add_editor, console_client, sign_in

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ARTICLE = {"url": "https://news.example/a/1", "title": "Ceasefire holds", "tags": ["Syria"]}


def token_for(email: str, name: str) -> dict[str, str]:
    with db.session_scope() as session:
        token, _ = api_tokens.create(session, editors.by_email(session, email), name)
    return {"Authorization": f"Bearer {token}"}


def row_counts() -> dict[str, int]:
    with db.session_scope() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables}


def entries() -> list[AuditEntry]:
    with db.session_scope() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_an_editors_token_publishes_but_cannot_reach_readers(fresh) -> None:
    add_editor("desk@news.example")
    desk = token_for("desk@news.example", "desk-cms")
    client = console_client()
    r = client.post("/api/articles", json=ARTICLE, headers=desk)
    assert r.status_code == 201
    article_id = r.json()["id"]
    assert client.post("/api/articles", json=ARTICLE, headers=desk).status_code == 200
    assert client.get("/api/editions", headers=desk).status_code == 200
    before = row_counts()
    refused = [
        client.post("/api/subscribers", headers=desk, json=[{"email": "r@example.com",
                                                             "topics": ["syria"]}]),
        client.get("/api/subscribers/r@example.com", headers=desk),
        client.delete("/api/subscribers/r@example.com", headers=desk),
        client.post("/api/bounces", headers={**desk, "Content-Type": "message/rfc822"},
                    content=b"From: x\r\n\r\nbody"),
        client.get("/api/audit", headers=desk),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "needs the admin role" in refused[0].json()["detail"]
    assert row_counts() == before
    # Publishing the same article again changed nothing, so it is logged once.
    assert [(e.actor, e.action, e.target) for e in entries()] == [
        ("token:desk-cms", "article.publish", f"article:{article_id}")]
    assert entries()[0].ip


def test_the_admin_token_and_an_admins_token_reach_everything(fresh) -> None:
    add_editor("chief@news.example", "admin")
    chief = token_for("chief@news.example", "chief-laptop")
    client = console_client()
    r = client.post("/api/articles", json=ARTICLE, headers=chief)
    assert r.status_code == 201
    article_id = r.json()["id"]
    r = client.post("/api/subscribers", headers=ADMIN, json=[
        {"email": "reader.one@example.com", "topics": ["syria"],
         "consented_at": "2026-01-01T00:00:00Z"}])
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    with db.session_scope() as session:
        reader_id = session.scalar(select(Reader.id))
    assert client.delete("/api/subscribers/reader.one@example.com", headers=chief).json() == {
        "status": "erased"}
    log = client.get("/api/audit?limit=10", headers=chief).json()
    assert [(e["actor"], e["action"], e["target"]) for e in log] == [
        ("token:chief-laptop", "reader.erase", f"reader:{reader_id}"),
        ("token:ADMIN_TOKEN", "readers.import", "readers"),
        ("token:chief-laptop", "article.publish", f"article:{article_id}")]
    assert set(log[0]) >= {"at", "actor", "action", "target"}
    assert log[0]["at"] >= log[1]["at"]
    assert client.get("/api/audit?limit=1", headers=ADMIN).json() == log[:1]
    # The reader is gone and nothing in the log names them but by id.
    assert "reader.one" not in str(log)


def test_a_revoked_token_or_a_console_cookie_opens_nothing(fresh) -> None:
    add_editor("chief@news.example", "admin")
    chief = token_for("chief@news.example", "old")
    with db.session_scope() as session:
        api_tokens.revoke(session, api_tokens.listing(session, None)[0])
    client = console_client()
    r = client.get("/api/editions", headers=chief)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    sign_in(client, "chief@news.example")
    assert client.get("/admin").status_code == 200  # signed in to the console …
    assert client.get("/api/editions").status_code == 401  # … which is not the API


def test_demoting_an_editor_demotes_their_tokens(fresh) -> None:
    add_editor("chief@news.example", "admin")
    add_editor("deputy@news.example", "admin")
    deputy = token_for("deputy@news.example", "deputy")
    client = console_client()
    assert client.get("/api/audit", headers=deputy).status_code == 200
    with db.session_scope() as session:
        editors.set_role(session, editors.by_email(session, "deputy@news.example"), "editor")
    assert client.get("/api/audit", headers=deputy).status_code == 403
