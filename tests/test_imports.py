"""Readers moving in from another tool, through the API and the CLI, on each backend.

A pending row's confirmation email goes through the real worker and SMTP server.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.models import ConsentEvent, OutboxEvent, Reader, ReaderTopic, utcnow
from newsletter.newsroom import topics
from newsletter.readers import consent
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, offer_topics

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SAMPLE = Path(__file__).parent / "data" / "subscribers.csv"


def seed_topics() -> None:
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Jordan", "Lebanon", "Gulf States")


def reader(email: str) -> tuple[Reader | None, set[str]]:
    with db.session_scope() as session:
        found = session.scalar(select(Reader).where(Reader.email == email))
        return found, {t.slug for t in found.topics} if found else set()


def ledger(email: str) -> list[ConsentEvent]:
    with db.session_scope() as session:
        return list(session.scalars(select(ConsentEvent).where(
            ConsentEvent.email_hash == consent.email_hash(email)).order_by(ConsentEvent.id)))


def count(model, *where) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def confirmations_recorded() -> int:
    return count(OutboxEvent, OutboxEvent.name == "reader.subscribed")


def test_api_import_creates_updates_and_skips_with_reasons(fresh) -> None:
    backend = fresh
    seed_topics()
    client = TestClient(create_app())
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "Hala@Example.com", "topics": ["syria", "Jordan"], "frequency": "daily",
         "consented_at": "2023-04-17", "source": "mailchimp"},
        {"email": "new.reader@example.net", "topics": ["Gulf States"],
         "frequency": "immediate"},
        {"email": "not-an-address", "topics": ["syria"]},
        {"email": "lost@example.com", "topics": ["Atlantis", "syria"]},
        {"email": "later@example.com", "topics": ["syria"], "frequency": "hourly"},
        {"email": "hala@example.com", "topics": ["syria"]},
        {"email": "typo@example.com", "topics": ["syria"], "consented_at": "last spring"},
        {"email": "none@example.com", "topics": []},
    ])
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("created", "updated", "unchanged", "skipped")} == {
        "created": 2, "updated": 0, "unchanged": 0, "skipped": 6}
    reasons = {e["row"]: e["reason"] for e in body["errors"]}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "not a valid email address" in reasons[3]
    assert reasons[4] == "unknown topic(s): Atlantis"  # topics are never invented
    assert "immediate, daily or weekly" in reasons[5]
    assert reasons[6] == "same address as row 1"
    assert "ISO 8601" in reasons[7]
    assert reasons[8] == "no topics"

    # Prior consent: active at once, the original date kept beside today's record of it.
    hala, topics = reader("hala@example.com")
    assert (hala.status, hala.frequency, hala.source) == ("active", "daily", "import")
    assert topics == {"syria", "jordan"}
    assert hala.confirmed_at == datetime(2023, 4, 17, tzinfo=UTC)
    (entry,) = ledger("hala@example.com")
    assert (entry.action, entry.source, entry.method) == ("confirmed", "import", "import")
    assert entry.details["consented_at"] == "2023-04-17T00:00:00+00:00"
    assert entry.details["source"] == "mailchimp"
    assert entry.created_at > utcnow() - timedelta(minutes=5)
    assert entry.consent_text_version is None  # they agreed to the other tool's words

    # No consent stated: pending, and the usual confirmation email through the worker.
    pending, _ = reader("new.reader@example.net")
    assert pending.status == "pending" and pending.confirmed_at is None
    assert [e.action for e in ledger("new.reader@example.net")] == ["requested"]
    (message,) = backend.smtp.wait_for(1)
    assert str(message["To"]) == "new.reader@example.net", dump_log(backend)
    assert message["Subject"].startswith("Confirm")

    # Re-importing updates and never duplicates; an unchanged pending reader is not mailed
    # again within the day.
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "hala@example.com", "topics": ["Syria"], "frequency": "weekly",
         "consented_at": "2023-04-17"},
        {"email": "new.reader@example.net", "topics": ["gulf-states"],
         "frequency": "immediate"},
    ])
    assert r.status_code == 200 and r.json() == {
        "created": 0, "updated": 1, "unchanged": 1, "skipped": 0, "errors": []}
    assert count(Reader) == 2
    hala, topics = reader("hala@example.com")
    assert (hala.frequency, topics) == ("weekly", {"syria"})
    changed = ledger("hala@example.com")[-1]
    assert (changed.action, changed.source) == ("changed", "import")
    assert changed.details == {"topics": ["syria"], "frequency": "weekly"}
    assert confirmations_recorded() == 1

    # The confirmation link works like a form sign-up's.
    token = re.search(r"/confirm/([\w.\-]+)", message.get_body(("plain",)).get_content())
    assert client.post(f"/confirm/{token.group(1)}").status_code == 200
    assert reader("new.reader@example.net")[0].status == "active"


def test_an_import_never_resubscribes_nor_re_adds_a_suppressed_address(fresh) -> None:
    seed_topics()
    with db.session_scope() as session:
        syria = [topics.get(session, "syria")]
        session.add(Reader(email="gone@example.com", status="unsubscribed", topics=syria,
                           unsubscribed_at=utcnow()))
        session.add(Reader(email="waiting@example.com", status="pending", topics=syria,
                           confirmation_sent_at=utcnow()))
        consent.suppress(session, "erased@example.com", "erased")
    before = count(ConsentEvent)
    r = TestClient(create_app()).post("/api/subscribers", headers=AUTH, json=[
        {"email": "gone@example.com", "topics": ["syria"], "consented_at": "2022-01-01"},
        {"email": "Erased@Example.com", "topics": ["syria"], "consented_at": "2022-01-01"},
        {"email": "erased@example.com", "topics": ["jordan"]},
        {"email": "waiting@example.com", "topics": ["syria"], "consented_at": "2022-01-01"},
    ])
    body = r.json()
    assert (body["created"], body["updated"], body["skipped"]) == (0, 1, 3)
    reasons = dict((e["row"], e["reason"]) for e in body["errors"])
    assert "unsubscribed" in reasons[1]
    assert "suppressed" in reasons[2]
    assert reasons[3] == "same address as row 2"
    assert reader("gone@example.com")[0].status == "unsubscribed"
    assert reader("erased@example.com")[0] is None
    # A pending reader whose prior consent the import states is active now.
    waiting, _ = reader("waiting@example.com")
    assert waiting.status == "active" and waiting.confirmed_at == datetime(2022, 1, 1, tzinfo=UTC)
    assert [e.action for e in ledger("waiting@example.com")] == ["confirmed"]
    assert count(ConsentEvent) == before + 1
    assert confirmations_recorded() == 0


def test_the_api_refuses_a_body_that_is_not_a_list_of_objects(fresh) -> None:
    client = TestClient(create_app())
    for body in ({"email": "a@example.com", "topics": ["syria"]}, [1, 2], "a@example.com",
                 [[]]):
        assert client.post("/api/subscribers", headers=AUTH, json=body).status_code == 422
    too_many = [{"email": f"r{i}@example.com", "topics": ["syria"]} for i in range(10_001)]
    assert client.post("/api/subscribers", headers=AUTH, json=too_many).status_code == 422
    assert client.post("/api/subscribers", json=[]).status_code == 401
    assert count(Reader) == 0


def test_cli_imports_a_csv_export(fresh) -> None:
    backend = fresh
    seed_topics()
    result = CliRunner().invoke(cli, ["import-subscribers", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "created 3, updated 0, unchanged 0, skipped 5" in result.output
    for line, reason in [(5, "not a valid email address"), (6, "unknown topic(s): Atlantis"),
                         (7, "immediate, daily or weekly"), (8, "ISO 8601"),
                         (9, "same address as row 2")]:
        assert f"line {line}: " in result.output and reason in result.output
    omar, topics = reader("omar@example.org")
    assert (omar.status, omar.frequency, topics) == ("active", "immediate",
                                                     {"syria", "gulf-states"})
    assert omar.confirmed_at == datetime(2024, 1, 9, 6, 30, tzinfo=UTC)
    assert ledger("omar@example.org")[0].details["source"] == "mailchimp"
    assert reader("new.reader@example.net")[0].status == "pending"
    (message,) = backend.smtp.wait_for(1)
    assert str(message["To"]) == "new.reader@example.net"


def test_cli_refuses_a_file_it_cannot_read_and_imports_nothing(fresh, tmp_path) -> None:
    seed_topics()
    headless = tmp_path / "headless.csv"
    headless.write_text("a@example.com,syria\n")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("email,topics\nb@example.com,syria\nzoë@example.com,syria\n"
                       .encode("latin-1"))
    for path, reason in [(headless, "'email' column"), (latin1, "not UTF-8")]:
        result = CliRunner().invoke(cli, ["import-subscribers", str(path)])
        assert result.exit_code == 2 and reason in result.output, result.output
    assert count(Reader) == 0


def test_cli_imports_ten_thousand_rows_and_a_second_run_duplicates_nothing(fresh,
                                                                        tmp_path) -> None:
    seed_topics()
    path = tmp_path / "readers.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "topics", "frequency", "consented_at", "source"])
        for i in range(10_000):
            out.writerow([f"reader{i:05d}@example.com",
                          "Syria;Jordan" if i % 2 else "Gulf States|Lebanon",
                          ("immediate", "daily", "weekly")[i % 3],
                          f"2024-{1 + i % 9:02d}-15", "listmonk"])
    result = CliRunner().invoke(cli, ["import-subscribers", str(path)])
    assert result.exit_code == 0, result.output
    assert "created 10000, updated 0, unchanged 0, skipped 0" in result.output
    assert count(Reader) == count(Reader, Reader.status == "active") == 10_000
    assert count(ReaderTopic) == 20_000
    assert count(ConsentEvent, ConsentEvent.action == "confirmed",
                 ConsentEvent.source == "import") == 10_000
    sample, topics = reader("reader04242@example.com")
    assert (sample.frequency, topics) == ("immediate", {"gulf-states", "lebanon"})
    assert sample.confirmed_at == datetime(2024, 4, 15, tzinfo=UTC)
    assert confirmations_recorded() == 0

    result = CliRunner().invoke(cli, ["import-subscribers", str(path)])
    assert "created 0, updated 0, unchanged 10000, skipped 0" in result.output
    assert count(Reader) == 10_000 and count(ReaderTopic) == 20_000
    assert count(ConsentEvent) == 10_000
