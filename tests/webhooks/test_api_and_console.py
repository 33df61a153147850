"""Registering webhooks over HTTP (each backend): the admin API and the console page, who
may, the secret shown once, bad input refused with nothing changed, the audit log; and the
SSRF guard, at registration and again at send time."""

from __future__ import annotations

from sqlalchemy import func, select

from newsletter import db, events
from newsletter.accounts import api_tokens, editors
from newsletter.models import AuditEntry, WebhookDelivery, WebhookEndpoint
from tests.conftest import ADMIN_TOKEN, add_editor, console_client, csrf_of, sign_in
from tests.webhooks.conftest import settings
from tests.webhooks.test_delivery import pump, pump_until, record, rows

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def endpoint_count() -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count(WebhookEndpoint.id)))


def audit_actions() -> list[tuple[str, str]]:
    with db.session_scope() as session:
        return [(e.action, e.target) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("webhook.%")).order_by(AuditEntry.id))]


def test_the_api_registers_lists_and_deletes_for_admins_only(fresh, receiver):
    client = console_client()
    body = {"url": receiver.url, "events": ["reader.confirmed", "edition.sent"]}
    assert client.post("/api/webhooks", json=body).status_code == 401
    add_editor("desk@news.example")
    with db.session_scope() as session:
        token, _ = api_tokens.create(session, editors.by_email(session, "desk@news.example"))
    desk = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/webhooks", json=body, headers=desk).status_code == 403
    assert client.get("/api/webhooks", headers=desk).status_code == 403
    assert endpoint_count() == 0

    r = client.post("/api/webhooks", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["secret"].startswith("whsec_") and made["url"] == receiver.url
    assert made["events"] == ["edition.sent", "reader.confirmed"]  # the house's order
    listed = client.get("/api/webhooks", headers=ADMIN)
    assert listed.json() == [{k: v for k, v in made.items() if k != "secret"}]
    assert made["secret"] not in listed.text
    with db.session_scope() as session:  # encrypted at rest
        assert made["secret"] not in session.scalar(select(WebhookEndpoint.secret))

    assert client.delete(f"/api/webhooks/{made['id']}", headers=desk).status_code == 403
    assert client.delete(f"/api/webhooks/{made['id']}", headers=ADMIN).status_code == 204
    assert client.delete(f"/api/webhooks/{made['id']}", headers=ADMIN).status_code == 404
    assert client.get("/api/webhooks", headers=ADMIN).json() == []
    target = f"webhook:{made['id']}"
    assert audit_actions() == [("webhook.create", target), ("webhook.delete", target)]


def test_unknown_events_and_refused_urls_are_422_and_change_nothing(fresh, receiver):
    client = console_client()
    cases = [
        ({"url": receiver.url, "events": ["reader.confirmed", "reader.exploded"]},
         "unknown event reader.exploded"),
        ({"url": receiver.url, "events": []}, ""),
        ({"url": "ftp://127.0.0.1/x", "events": ["edition.sent"]}, "only http and https"),
        ({"url": "http://no-such-host.invalid/", "events": ["edition.sent"]}, "cannot resolve"),
    ]
    for body, why in cases:
        r = client.post("/api/webhooks", json=body, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert why in r.text
    assert endpoint_count() == 0 and audit_actions() == []


def test_private_addresses_are_refused_unless_allowed(fresh, receiver):
    client = console_client()
    body = {"url": receiver.url, "events": ["edition.sent"]}
    with settings(webhook_allow_private="false"):
        r = client.post("/api/webhooks", json=body, headers=ADMIN)
        assert r.status_code == 422
        assert "127.0.0.1 is a loopback address" in r.json()["detail"]
        assert "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"]
        for url in ("http://[::1]/", "http://169.254.169.254/latest/meta-data",
                    "http://10.0.0.1/", "http://[::ffff:127.0.0.1]/"):
            assert client.post("/api/webhooks", json={**body, "url": url},
                               headers=ADMIN).status_code == 422, url
        with settings(webhook_allowed_hosts="localhost"):  # an internal CMS, by name
            local = receiver.url.replace("127.0.0.1", "localhost")
            assert client.post("/api/webhooks", json={**body, "url": local},
                               headers=ADMIN).status_code == 201
            # A host not on the list is not let through by the list.
            assert client.post("/api/webhooks", json=body, headers=ADMIN).status_code == 422
    assert endpoint_count() == 1


def test_the_guard_is_asked_again_at_send_time(fresh, dispatcher, receiver):
    dispatcher.accept()
    r = console_client().post("/api/webhooks", headers=ADMIN,
                              json={"url": receiver.url, "events": ["edition.sent"]})
    receiver.secret = r.json()["secret"]
    record(events.EDITION_SENT, edition_id=1)
    with settings(webhook_allow_private="false"):  # as if the name now pointed inside
        run = pump()
    assert run.delivered == 0 and receiver.requests == 0
    (row,) = rows()
    assert row.status == "pending" and "loopback address" in row.last_error
    pump_until(lambda: receiver.received)  # allowed again: sent at its next attempt
    assert receiver.received[0]["data"] == {"edition_id": 1}


def test_the_console_page_adds_shows_the_secret_once_and_removes(fresh, dispatcher, receiver):
    dispatcher.accept()
    add_editor("desk@news.example")
    desk = console_client()
    sign_in(desk, "desk@news.example")
    assert desk.get("/admin/webhooks").status_code == 403
    add_editor("chief@news.example", role="admin")
    client = console_client()
    sign_in(client, "chief@news.example")
    page = client.get("/admin/webhooks")
    assert page.status_code == 200 and "No endpoints yet" in page.text
    csrf = csrf_of(client)
    assert client.post("/admin/webhooks", data={"url": receiver.url, "event": "edition.sent"}
                       ).status_code == 403  # no CSRF token
    r = client.post("/admin/webhooks", data={"url": "http://x/", "event": "nope",
                                              "csrf_token": csrf})
    assert r.status_code == 422 and "Unknown event nope" in r.text and endpoint_count() == 0
    r = client.post("/admin/webhooks", data={"url": receiver.url, "csrf_token": csrf,
                                              "event": ["edition.sent", "reader.bounced"]})
    assert r.status_code == 201
    secret = r.text.split('id="new-secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("whsec_")
    page = client.get("/admin/webhooks").text
    assert secret not in page and receiver.url in page

    # A dead letter shows with its error, and its retry sends it.
    receiver.secret = secret
    receiver.status = 500
    with settings(webhook_max_attempts="1"):
        record(events.READER_BOUNCED, reader_id=3, kind="bounce", edition_id=None)
        pump_until(lambda: rows()[0].status == "dead")
    page = client.get("/admin/webhooks").text
    assert "reader.bounced" in page and "HTTP 500" in page
    (dead,) = rows()
    receiver.status = 200
    r = client.post(f"/admin/webhooks/deliveries/{dead.id}/retry", data={"csrf_token": csrf})
    assert r.status_code == 303
    pump()
    assert receiver.types_for("reader_id", 3) == ["reader.bounced"]

    endpoint_id = dead.endpoint_id
    confirm = client.get(f"/admin/webhooks/{endpoint_id}/remove")
    assert confirm.status_code == 200 and "Remove this endpoint?" in confirm.text
    assert endpoint_count() == 1  # asking changed nothing
    r = client.post(f"/admin/webhooks/{endpoint_id}/remove", data={"csrf_token": csrf})
    assert r.status_code == 303 and endpoint_count() == 0
    with db.session_scope() as session:
        assert session.scalar(select(func.count(WebhookDelivery.id))) == 0
    assert [a for a, _ in audit_actions()] == ["webhook.create", "webhook.retry", "webhook.delete"]
