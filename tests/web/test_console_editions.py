"""The console's edition pages over HTTP (the app's TestClient), on each backend with a real
worker and SMTP server: an editor's dry run then send (with an editor's note that reaches
every digest literally), the edition's page while and after it sends, resume and requeue,
the preview and its test send; forms that keep what was typed; an audit entry per change."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from newsletter import db
from newsletter.models import AuditEntry, Delivery, Edition, utcnow
from tests.conftest import add_editor, console_client, csrf_of, sign_in
from tests.helpers import add_readers, publish, wait_done

# A note that looks like markup, a Jinja expression and our per-reader markers: an editor's
# text, shown as typed in the text part and escaped in the HTML, never interpreted.
HOSTILE_NOTE = ('<b>Elections</b> & "results" {{ email }} __nl_email__ __nlslot0__\n\n'
                "<script>alert(1)</script> Second paragraph.")


def editor_client(email: str = "desk@news.example", role: str = "editor"):
    add_editor(email, role)
    client = console_client()
    assert sign_in(client, email).status_code == 303
    return client, csrf_of(client)


def newsroom() -> None:
    publish("Ceasefire talks resume", ["Syria"])
    publish("Gas field output rises", ["Energy"])
    add_readers({"amal@example.org": ["syria"], "bo@example.org": ["energy"],
                 "chen@example.org": ["syria", "energy"]})


def actions() -> list[tuple[str, str]]:
    with db.session_scope() as session:
        return [(e.action, e.target) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))
            if e.action != "editor.sign_in"]


def test_an_editor_dry_runs_then_sends_an_edition_with_a_note(fresh) -> None:
    newsroom()
    client, token = editor_client()
    page = client.get("/admin/editions/new")
    assert page.status_code == 200
    assert "Next scheduled editions" in page.text and "3 active weekly readers" in page.text

    r = client.post("/admin/editions/new", data={
        "frequency": "weekly", "note": HOSTILE_NOTE, "csrf_token": token})
    assert r.status_code == 303
    dry_id = int(re.search(r"dry_run=(\d+)", r.headers["location"]).group(1))
    assert wait_done(dry_id)["plan"]["emails"] == 3
    page = client.get(f"/admin/editions/new?dry_run={dry_id}").text
    assert "Send it: 3 emails" in page
    assert re.findall(r'<td data-label="Topic">([^<]+)</td><td data-label="Articles">(\d+)</td>'
                      r'<td data-label="Readers">(\d+)</td>', page) == [
        ("Energy", "1", "2"), ("Syria", "1", "2")]  # what it would do per topic
    assert "&lt;b&gt;Elections&lt;/b&gt;" in page  # the note, kept in the form as typed
    assert fresh.smtp.messages() == []  # a dry run sends nothing

    first = client.post(f"/admin/editions/{dry_id}/send", data={"csrf_token": token})
    again = client.post(f"/admin/editions/{dry_id}/send", data={"csrf_token": token})
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]  # a double click is once
    edition_id = int(first.headers["location"].rsplit("/", 1)[1])
    report = wait_done(edition_id)
    assert report["counts"]["sent"] == 3 and report["note"] == HOSTILE_NOTE
    messages = fresh.smtp.wait_for(3)
    assert len(messages) == 3
    for message in messages:
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert "<b>Elections</b> & \"results\" {{ email }} __nl_email__ __nlslot0__" in text
        assert "<script>alert(1)</script> Second paragraph." in text
        assert "&lt;b&gt;Elections&lt;/b&gt; &amp; \"results\" {{ email }} __nl_email__ " \
               "__nlslot0__" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; Second paragraph." in html
        note_line = next(line for line in text.splitlines() if "__nl_email__" in line)
        assert "<script>" not in html and message["To"] not in note_line
    assert actions() == [("edition.send", f"edition:{dry_id}"),
                         ("edition.send", f"edition:{edition_id}")]

    page = client.get(f"/admin/editions/{edition_id}").text
    assert "Sent</dt><dd>3</dd>" in page and "amal@example.org" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'hx-get="/admin/editions/{edition_id}/contents?page=1" hx-trigger="load"' in page
    topics = client.get(f"/admin/editions/{edition_id}/contents",
                        headers={"HX-Request": "true"})
    assert topics.status_code == 200 and "<html" not in topics.text
    assert "hx-trigger" not in topics.text  # done: it no longer refreshes
    rows = re.findall(r'<td data-label="Topic">([^<]+)</td><td data-label="Articles">(\d+)</td>'
                      r'<td data-label="Readers">(\d+)</td>', topics.text)
    assert sorted(rows) == [("Energy", "1", "2"), ("Syria", "1", "2")]
    assert "A sample of what it sent" in topics.text and "Ceasefire talks resume" in topics.text
    assert "amal@example.org" not in topics.text
    assert "<html" in client.get(f"/admin/editions/{edition_id}/contents").text  # no script

    listing = client.get("/admin/editions").text
    assert f'href="/admin/editions/{edition_id}"' in listing and "dry run" in listing
    dashboard = client.get("/admin").text
    assert f"#{edition_id}" in dashboard and 'id="chart-data"' in dashboard
    assert "No edition is being planned or sent right now" in dashboard


def test_a_live_edition_polls_its_progress_and_stops_when_done(fresh) -> None:
    newsroom()
    client, token = editor_client()
    with db.session_scope() as session:  # an edition a worker is sending (seeded, not run)
        edition = Edition(kind="digest", frequency="weekly", status="sending", source="api")
        session.add(edition)
        session.flush()
        edition_id = edition.id
    page = client.get(f"/admin/editions/{edition_id}").text
    assert f'hx-get="/admin/editions/{edition_id}/progress" hx-trigger="every 2s"' in page
    assert 'hx-get="/admin/progress" hx-trigger="every 2s"' in client.get("/admin").text
    contents = client.get(f"/admin/editions/{edition_id}/contents",
                          headers={"HX-Request": "true"}).text
    assert f'hx-get="/admin/editions/{edition_id}/contents?page=1" hx-trigger="every 10s"' \
        in contents
    with db.session_scope() as session:
        session.execute(update(Edition).where(Edition.id == edition_id).values(status="done"))
    fragment = client.get(f"/admin/editions/{edition_id}/progress").text
    assert "hx-trigger" not in fragment and "<html" not in fragment and "done" in fragment
    assert "hx-trigger" not in client.get("/admin/progress").text


def test_the_form_keeps_what_was_typed_and_says_what_to_fix(fresh) -> None:
    newsroom()
    client, token = editor_client()
    r = client.post("/admin/editions/new", data={
        "note": "x" * 1001, "tags": ["syria"], "csrf_token": token})
    assert r.status_code == 422
    assert "Choose daily or weekly." in r.text and "at most 1,000 characters" in r.text
    assert "x" * 1001 in r.text and 'value="syria" checked' in r.text
    r = client.post("/admin/editions/new", data={
        "frequency": "daily", "tags": ["atlantis"], "note": "Hello", "csrf_token": token})
    assert r.status_code == 422 and "Unknown tag(s): atlantis" in r.text
    assert ">Hello</textarea>" in r.text and 'value="daily" checked' in r.text
    with db.session_scope() as session:
        assert session.scalar(select(Edition.id)) is None  # nothing was requested
    assert actions() == []


def test_resume_and_requeue_are_audited_and_refused_when_they_make_no_sense(fresh) -> None:
    newsroom()
    client, token = editor_client()
    r = client.post("/admin/editions/new", data={"frequency": "weekly", "csrf_token": token})
    dry_id = int(re.search(r"dry_run=(\d+)", r.headers["location"]).group(1))
    wait_done(dry_id)
    r = client.post(f"/admin/editions/{dry_id}/send", data={"csrf_token": token})
    edition_id = int(r.headers["location"].rsplit("/", 1)[1])
    wait_done(edition_id)
    r = client.post(f"/admin/editions/{edition_id}/resume", data={"csrf_token": token})
    assert r.status_code == 409 and "is done, not paused" in r.text
    # Had two deliveries given up after temporary failures, the edition would have finished
    # with them: the page offers them again.
    with db.session_scope() as session:
        ids = session.scalars(select(Delivery.id).where(Delivery.edition_id == edition_id)
                              .order_by(Delivery.id).limit(2)).all()
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
            status="failed", failure="temporary", last_error="451 4.3.0 try again later"))
        session.execute(update(Edition).where(Edition.id == edition_id).values(
            finished_at=utcnow()))
    page = client.get(f"/admin/editions/{edition_id}").text
    assert "Send the 2 that gave up again" in page and "451 4.3.0 try again later" in page
    fresh.smtp.clear()
    r = client.post(f"/admin/editions/{edition_id}/requeue", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].endswith("?done=requeued")
    fresh.smtp.wait_for(2)
    assert wait_done(edition_id)["counts"]["sent"] == 3
    r = client.post(f"/admin/editions/{edition_id}/requeue", data={"csrf_token": token})
    assert r.headers["location"].endswith("?done=nothing")
    # Paused by a systemic failure: resume sends what it still has queued.
    with db.session_scope() as session:
        session.execute(update(Edition).where(Edition.id == edition_id).values(
            status="paused", error="the relay refused everyone"))
    page = client.get(f"/admin/editions/{edition_id}").text
    assert "Resume edition" in page and "the relay refused everyone" in page
    r = client.post(f"/admin/editions/{edition_id}/resume", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].endswith("?done=resumed")
    assert wait_done(edition_id)["status"] == "done"
    assert [a for a, _ in actions()][2:] == ["edition.requeue", "edition.requeue",
                                             "edition.resume"]


def test_preview_in_a_sandboxed_frame_and_a_test_send_to_me(fresh) -> None:
    newsroom()
    client, token = editor_client("chief@news.example", "admin")
    page = client.get("/admin/preview?email=chen@example.org&width=phone")
    assert page.status_code == 200
    assert "frame-src 'self'" in page.headers["content-security-policy"]
    assert 'sandbox=""' in page.text and "preview-phone" in page.text
    assert "Ceasefire talks resume" in page.text  # the text part, beside the frame
    frame_url = re.search(r'<iframe src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    frame = client.get(frame_url)
    assert frame.status_code == 200 and "Gas field output rises" in frame.text
    policy = frame.headers["content-security-policy"]
    assert "sandbox" in policy and "frame-ancestors 'self'" in policy and "script-src" not in policy

    r = client.post("/admin/preview/test-send", data={
        "email": "chen@example.org", "frequency": "", "width": "phone", "csrf_token": token})
    assert r.status_code == 303 and "sent=1" in r.headers["location"]
    [message] = fresh.smtp.wait_for(1)
    assert message["To"] == "chief@news.example" and message["Subject"].startswith("[TEST] ")
    assert "sent to chief@news.example" in message.get_body(("plain",)).get_content()
    assert "is on its way to chief@news.example" in client.get(r.headers["location"]).text
    assert actions() == [("edition.test_send", "edition:test")]
    with db.session_scope() as session:  # a test send records no delivery
        assert session.scalar(select(Delivery.id)) is None

    r = client.get("/admin/preview?email=nobody@example.org")
    assert r.status_code == 404 and "No reader with the address nobody@example.org" in r.text
    assert 'value="nobody@example.org"' in r.text
    r = client.get("/admin/preview?tag=syria&frequency=daily")
    assert r.status_code == 200 and "Ceasefire talks resume" in r.text
    assert len(fresh.smtp.messages()) == 1


def test_the_note_through_the_api_and_the_command_line(fresh) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from newsletter.cli import app as cli
    from newsletter.web.app import create_app
    from tests.conftest import ADMIN_TOKEN

    newsroom()
    api = TestClient(create_app())
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = api.post("/api/editions", headers=auth, json={
        "frequency": "weekly", "dry_run": True, "note": "  \x00Hello\x07 <readers>\n\n"})
    assert r.status_code == 202
    assert wait_done(r.json()["id"])["note"] == "Hello <readers>"  # controls and blanks out
    r = api.post("/api/editions", headers=auth, json={"frequency": "weekly", "note": "x" * 1001})
    assert r.status_code == 422 and "at most 1,000 characters" in r.json()["detail"]
    result = CliRunner().invoke(cli, ["send", "--frequency", "daily", "--dry-run",
                                      "--note", "From the desk"])
    assert result.exit_code == 0, result.output
    with db.session_scope() as session:
        notes = session.scalars(select(Edition.note).order_by(Edition.id)).all()
    assert notes == ["Hello <readers>", "From the desk"]  # the refused one was not made
    assert [a for a, _ in actions()] == ["edition.send", "edition.send"]
