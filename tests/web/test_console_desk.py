"""The console's newsroom and readers pages over HTTP (the app's TestClient, each backend):
articles, readers, the CSV import run by the real worker, feeds and deliverability; who may
see and change what, every change audited and confirmed first."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db
from newsletter.models import AuditEntry, Reader, ReaderImport, Suppression
from newsletter.readers import consent
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, add_editor, console_client, csrf_of, offer_topics, sign_in

API = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(autouse=True)
def syria_offered(fresh) -> None:
    """Readers follow topics an editor offered: the imports below name these (the sample
    CSV, tests/data/subscribers.csv, names the last three too)."""
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Jordan", "Lebanon", "Gulf States")


def publish(api: TestClient, n: int, title: str = "Story", tags=("Syria",)) -> list[int]:
    ids = []
    for i in range(n):
        r = api.post("/api/articles", headers=API, json={
            "url": f"https://news.example/{title.lower()}-{i}", "title": f"{title} {i}",
            "summary": f"Summary {i}", "tags": list(tags)})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def import_active(api: TestClient, *emails: str, topics=("syria",)) -> None:
    r = api.post("/api/subscribers", headers=API, json=[
        {"email": e, "topics": list(topics), "consented_at": "2025-01-02T03:04:05+00:00"}
        for e in emails])
    assert r.status_code == 200 and r.json()["created"] == len(emails), r.text


def signed_in(role: str = "editor", email: str | None = None) -> tuple[TestClient, str]:
    email = email or f"{role}@news.example"
    add_editor(email, role)
    client = console_client()
    assert sign_in(client, email).status_code == 303
    return client, csrf_of(client)


def audit_entries(action: str) -> list[AuditEntry]:
    with db.session_scope() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def reader_id(email: str) -> int | None:
    with db.session_scope() as session:
        return session.scalar(select(Reader.id).where(Reader.email == email))


def test_articles_search_revisions_corrections_and_a_confirmed_unpublish(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 27, "Ceasefire")
    [energy] = publish(api, 1, "Pipeline", tags=("Energy",))
    r = api.post("/api/articles", headers=API, json={
        "url": "https://news.example/pipeline-0", "title": "Pipeline 0 reopens after 3 weeks",
        "summary": "Summary 0, now with 30 numbers", "tags": ["Energy"]})
    assert r.status_code == 200
    client, token = signed_in()

    page = client.get("/admin/articles?q=ceasefire").text
    assert "27 articles" in page and "Pipeline" not in page
    assert 'href="?q=ceasefire&amp;page=2"' in page  # the next page keeps the search
    assert "Ceasefire 0" in client.get("/admin/articles?q=ceasefire&page=2").text
    page = client.get("/admin/articles?tag=energy").text
    assert "1 article," in page and "Pipeline 0 reopens" in page and "1 correction" in page
    assert "No article matches" in client.get("/admin/articles?q=%25_nothing").text

    page = client.get(f"/admin/articles/{energy}").text
    assert "correction" in page and "Pipeline 0 reopens after 3 weeks" in page
    confirm = client.get(f"/admin/articles/{energy}/unpublish").text
    assert "taken out of every email not yet sent" in confirm
    assert client.post(f"/admin/articles/{energy}/unpublish").status_code == 403  # no token
    assert "published" in client.get(f"/admin/articles/{energy}").text
    r = client.post(f"/admin/articles/{energy}/unpublish", data={"csrf_token": token})
    assert r.status_code == 303
    assert "1 article," in client.get("/admin/articles?status=unpublished").text
    [entry] = audit_entries("article.unpublish")
    assert (entry.actor, entry.target) == ("editor@news.example", f"article:{energy}")
    assert entry.ip and entry.details["deliveries_changed"] == 0
    assert client.get("/admin/articles/999999").status_code == 404


def test_editors_get_403_from_readers_feeds_imports_and_the_suppression_list(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 1)
    import_active(api, "ali@example.org")
    rid = reader_id("ali@example.org")
    client, token = signed_in("editor")
    for path in ("/admin/readers", f"/admin/readers/{rid}", f"/admin/readers/{rid}/erase",
                 f"/admin/readers/{rid}/deliveries", "/admin/readers/import", "/admin/feeds",
                 "/admin/deliverability/suppressions"):
        assert client.get(path).status_code == 403, path
    for path in (f"/admin/readers/{rid}/erase", f"/admin/readers/{rid}/export",
                 "/admin/deliverability/suppressions/1/remove"):
        assert client.post(path, data={"csrf_token": token, "why": "x"}).status_code == 403
    assert client.post("/admin/readers/import", data={"csrf_token": token},
                       files={"file": ("r.csv", b"email\nnew@example.org\n")}).status_code == 403
    assert reader_id("ali@example.org") == rid and reader_id("new@example.org") is None
    assert audit_entries("reader.erase") == []
    assert [e.actor for e in audit_entries("readers.import")] == ["token:ADMIN_TOKEN"]  # the API's
    page = client.get("/admin").text  # and the navigation does not offer them
    assert "/admin/readers" not in page and "/admin/feeds" not in page
    assert client.get("/admin/deliverability").status_code == 200


def test_find_a_reader_by_the_start_of_the_address_and_read_the_ledger(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 1)
    import_active(api, "ali@example.org", "natali@example.org", "alina@example.net")
    client, _ = signed_in("admin")
    page = client.get("/admin/readers?address=ALI").text
    assert "ali@example.org" in page and "alina@example.net" in page
    assert "natali@" not in page and "2 readers" in page
    assert "No reader matches" in client.get("/admin/readers?address=a%25").text
    rid = reader_id("ali@example.org")
    page = client.get(f"/admin/readers/{rid}").text
    assert "active" in page and "Syria" in page
    assert "confirmed" in page and "import" in page and "consented_at" in page
    assert "0 emails" in page
    assert "Nothing sent" in client.get(f"/admin/readers/{rid}/deliveries").text


def test_an_admin_exports_and_erases_a_reader_after_confirming(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 1)
    import_active(api, "leaving@example.org")
    rid = reader_id("leaving@example.org")
    client, token = signed_in("admin")
    r = client.post(f"/admin/readers/{rid}/export", data={"csrf_token": token})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.json()["reader"]["email"] == "leaving@example.org"
    confirm = client.get(f"/admin/readers/{rid}/erase").text
    assert "cannot be undone" in confirm and "suppression list" in confirm
    assert reader_id("leaving@example.org") == rid  # asking changed nothing
    r = client.post(f"/admin/readers/{rid}/erase", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/admin/readers?done=erased"
    assert reader_id("leaving@example.org") is None
    with db.session_scope() as session:
        assert consent.is_suppressed(session, "leaving@example.org")
    [entry] = audit_entries("reader.erase")
    assert entry.target == f"reader:{rid}" and "leaving" not in str(entry.details)
    assert audit_entries("reader.export")[0].target == f"reader:{rid}"
    assert client.get(f"/admin/readers/{rid}").status_code == 404


def wait_for_import(import_id: int, timeout: float = 30) -> ReaderImport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            job = session.get(ReaderImport, import_id)
            if job.status in ("done", "failed"):
                return job
        time.sleep(0.2)
    raise AssertionError("the import did not finish")


def test_a_csv_import_runs_in_the_worker_and_the_page_follows_it(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 1, tags=("Syria", "Jordan", "Lebanon", "Gulf States"))
    client, token = signed_in("admin")
    with open("tests/data/subscribers.csv", "rb") as f:
        data = f.read()
    r = client.post("/admin/readers/import", data={"csrf_token": token},
                    files={"file": ("subscribers.csv", data, "text/csv")})
    assert r.status_code == 303
    import_id = int(r.headers["location"].rsplit("/", 1)[1])
    page = client.get(r.headers["location"]).text
    assert 'hx-get="/admin/readers/import/' in page and "<progress" in page
    job = wait_for_import(import_id)
    assert job.status == "done" and job.content is None  # the addresses went where they belong
    assert job.done_rows == job.total_rows and job.result["created"] >= 2
    fragment = client.get(f"/admin/readers/import/{import_id}/progress").text
    assert "Done:" in fragment and "hx-get" not in fragment  # it stops polling
    assert "not a valid email address" in fragment
    assert reader_id("hala.nasser@example.com") is not None
    [entry] = audit_entries("readers.import")
    assert entry.target == f"import:{import_id}" and entry.details["rows"] == job.total_rows


def test_a_file_that_cannot_be_imported_is_explained_and_changes_nothing(fresh) -> None:
    client, token = signed_in("admin")
    for name, body, why in [("x.csv", b"address,topics\nx@example.org,syria\n", "header line"),
                            ("x.csv", b"email\n", "no rows"),
                            ("x.csv", b"email\n\xff\xfe@x\n", "not UTF-8")]:
        r = client.post("/admin/readers/import", data={"csrf_token": token},
                        files={"file": (name, body, "text/csv")})
        assert r.status_code == 422 and why in r.text, r.text
        assert 'aria-invalid="true"' in r.text
    r = client.post("/admin/readers/import", data={"csrf_token": token})
    assert r.status_code == 422 and "Choose a CSV file" in r.text
    with db.session_scope() as session:
        assert session.scalar(select(func.count(ReaderImport.id))) == 0
    assert audit_entries("readers.import") == []


def test_the_suppression_list_is_searched_by_address_and_an_entry_lifted_with_a_reason(
        fresh) -> None:
    with db.session_scope() as session:
        consent.suppress(session, "Bounced@Example.org", "bounce")
        consent.suppress(session, "other@example.org", "complaint")
    client, token = signed_in("admin")
    page = client.get("/admin/deliverability/suppressions?address=bounced%40example.org").text
    assert "is suppressed (bounce" in page
    entry_id = int(re.search(r"/suppressions/(\d+)/remove", page).group(1))
    page = client.get("/admin/deliverability/suppressions?address=nobody%40example.org").text
    assert "is not on the suppression list" in page
    r = client.get("/admin/deliverability/suppressions?address=not-an-address")
    assert r.status_code == 422 and "not-an-address" in r.text
    assert "2 entries" in client.get("/admin/deliverability/suppressions").text
    assert "1 entry" in client.get("/admin/deliverability/suppressions?reason=complaint").text

    assert "may then sign up again" in client.get(
        f"/admin/deliverability/suppressions/{entry_id}/remove").text
    r = client.post(f"/admin/deliverability/suppressions/{entry_id}/remove",
                    data={"csrf_token": token, "why": "   "})
    assert r.status_code == 422 and "Say why" in r.text
    with db.session_scope() as session:
        assert session.get(Suppression, entry_id) is not None
    r = client.post(f"/admin/deliverability/suppressions/{entry_id}/remove",
                    data={"csrf_token": token, "why": "full mailbox, reader phoned"})
    assert r.status_code == 303
    with db.session_scope() as session:
        assert not consent.is_suppressed(session, "bounced@example.org")
        assert consent.is_suppressed(session, "other@example.org")
    [entry] = audit_entries("suppression.remove")
    assert entry.details == {"reason": "full mailbox, reader phoned", "was": "bounce"}
    assert client.post(f"/admin/deliverability/suppressions/{entry_id}/remove",
                       data={"csrf_token": token, "why": "again"}).status_code == 404


def test_the_feeds_page_shows_each_feed_its_default_tag_and_last_poll(fresh, monkeypatch) -> None:
    from newsletter.config import reload_settings
    from newsletter.newsroom import feeds

    monkeypatch.setenv("NEWSLETTER_FEEDS", "tests/data/feed.rss World,tests/data/missing.rss")
    reload_settings()
    try:
        client, _ = signed_in("admin")
        page = client.get("/admin/feeds").text
        assert "tests/data/feed.rss" in page and "World" in page and "not polled yet" in page
        with db.session_scope() as session:
            feeds.poll(session)
        page = client.get("/admin/feeds").text
        assert re.search(r"ok</span> \d+ new", page) and "failed" in page
        assert "every 15 minutes" in page
    finally:
        monkeypatch.delenv("NEWSLETTER_FEEDS")
        reload_settings()


def test_deliverability_shows_dkim_reports_and_the_last_editions_outcomes(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 2)
    import_active(api, "one@example.org", "bounce-two@example.org")
    r = api.post("/api/editions", headers=API, json={"frequency": "weekly"})
    edition = r.json()["id"]
    deadline = time.monotonic() + 30
    while api.get(f"/api/editions/{edition}", headers=API).json()["status"] != "done":
        assert time.monotonic() < deadline, "the edition did not finish"
        time.sleep(0.2)
    client, _ = signed_in("editor")
    page = client.get("/admin/deliverability").text
    assert "Messages are not signed" in page
    assert f"Edition {edition}" in page and "1 of 2" in page
    assert "5.1.1" in page or "&lt;address&gt;" in page  # the refusal, address taken out
    assert "bounce-two@" not in page
    assert "suppression list" not in page.split("<main", 1)[1].split("</h1>")[1][:200]


def test_an_import_file_may_be_as_large_as_the_apis_and_no_larger(fresh) -> None:
    api = TestClient(create_app())
    publish(api, 1)
    client, token = signed_in("admin")
    rows = "".join(f"reader{n:06d}@example.org,syria,2025-01-01\n" for n in range(3000))
    body = ("email,topics,consent_date\n" + rows).encode()
    assert 64 * 1024 < len(body) < 5 * 1024 * 1024  # over the console's usual form ceiling
    r = client.post("/admin/readers/import", data={"csrf_token": token},
                    files={"file": ("big.csv", body, "text/csv")})
    assert r.status_code == 303
    assert wait_for_import(int(r.headers["location"].rsplit("/", 1)[1])).result["created"] == 3000
    r = client.post("/admin/readers/import", data={"csrf_token": token},
                    files={"file": ("huge.csv", body * 60, "text/csv")})
    assert r.status_code == 413
    with db.session_scope() as session:
        assert session.scalar(select(func.count(ReaderImport.id))) == 1


def test_article_and_feed_text_is_shown_as_text(fresh) -> None:
    api = TestClient(create_app())
    r = api.post("/api/articles", headers=API, json={
        "url": "https://news.example/x?a=1&b=<2>", "title": "<script>alert(1)</script> & co",
        "summary": "<img src=x onerror=alert(2)>", "tags": ["<b>Syria</b>"]})
    assert r.status_code == 201
    client, _ = signed_in()
    for page in (client.get("/admin/articles").text,
                 client.get(f"/admin/articles/{r.json()['id']}").text):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
