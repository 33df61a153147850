"""The relay misbehaves in every way we know; each reader still gets exactly one copy
(counted by Message-ID at the server), except the RFC 1047 case, counted as such.

Also the systemic failures: a sick relay or refused credentials pause the edition with a
reason and leave the rest queued with their attempts unspent; resume finishes it, once.
"""

from __future__ import annotations

from sqlalchemy import select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.models import ConsentEvent, Reader
from newsletter.readers import consent
from tests.reliability.conftest import AUTH, BATCH, copies_by_reader

FAULTY = ["full-1@example.com", "stall-1@example.com", "later-1@example.com",
          "drop-1@example.com", "reject-1@example.com", "bounce-1@example.com",
          "defer-1@example.com"]
# Fine readers between the faulty ones, so no five temporary failures come in a row (that
# would rightly pause the edition: see the tests below).
READERS = [e for i, bad in enumerate(FAULTY) for e in (f"fine{i}@example.com", bad)] + [
    "fine-last@example.com"]


def test_each_smtp_fault_costs_no_reader_a_copy_or_a_second_one(rig) -> None:
    rig.seed(READERS)
    rig.script.refuse_connects = 1  # 421 at connect for the first session
    rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    # defer-1 gives up after MAX_ATTEMPTS (quick retries here): the dead letter.
    report = rig.settle(edition_id, lease=60)
    copies = copies_by_reader(rig.script, READERS)
    rows = {d.reader_id: d for d in rig.deliveries(edition_id)}
    with db.session_scope() as session:
        by_email = {r.email: r for r in session.scalars(select(Reader))}
        status = {e: rows[by_email[e].id] for e in READERS}
        assert status["defer-1@example.com"].failure == "temporary"
        assert status["defer-1@example.com"].attempts == 5
        assert status["reject-1@example.com"].status == "failed"
        assert status["reject-1@example.com"].failure == "permanent"
        # 550 5.1.1 at RCPT: the address is suppressed, the reader unsubscribed, and the
        # ledger says why.
        bounced = by_email["bounce-1@example.com"]
        assert bounced.status == "unsubscribed"
        assert consent.is_suppressed(session, bounced.email)
        withdrawn = session.scalars(select(ConsentEvent).where(
            ConsentEvent.reader_id == bounced.id, ConsentEvent.action == "withdrawn")).all()
        assert [(w.method, w.edition_id) for w in withdrawn] == [("bounce", edition_id)]
        # Retried ones kept their Message-ID (counted below) and needed a second attempt.
        for e in ("full-1@example.com", "later-1@example.com", "drop-1@example.com",
                  "fine0@example.com"):
            assert status[e].status == "sent" and status[e].attempts == 2, (e, status[e])
        # The stalled RCPT timed out (2 s) and the transport's one reconnect sent it.
        assert status["stall-1@example.com"].attempts == 1
    assert report["counts"]["dead_letter"] == 1
    assert report["status"] == "done"

    expected = {e: 1 for e in READERS}
    expected |= {"reject-1@example.com": 0, "bounce-1@example.com": 0,
                 "defer-1@example.com": 0,
                 # Dropped after the final dot: the relay had it, we could not know: the
                 # retry is a second copy with the same Message-ID (RFC 1047).
                 "drop-1@example.com": 2}
    assert copies == expected

    # The operator requeues the dead letter once the relay takes it.
    rig.script.defer_ok = True
    r = rig.client().post(f"/api/editions/{edition_id}/requeue", headers=AUTH)
    assert r.status_code == 200 and r.json()["requeued"] == 1, r.text
    report = rig.settle(edition_id, lease=60)
    assert copies_by_reader(rig.script, ["defer-1@example.com"]) == {"defer-1@example.com": 1}
    assert report["counts"]["dead_letter"] == 0 and report["counts"]["sent"] == len(READERS) - 2
    print(f"\n[{rig.name}] SMTP faults: {len(READERS)} readers; second copies: drop-1 (1, "
          "same Message-ID); none otherwise")


def _all_queued_unspent(rig, edition_id: int) -> None:
    rows = rig.deliveries(edition_id)
    assert rows and all(d.status == "queued" and d.attempts == 0 for d in rows), [
        (d.status, d.attempts, d.last_error) for d in rows]


def test_a_sick_relay_pauses_the_edition_and_resume_finishes_it_once(rig) -> None:
    readers = [f"reader{i:02d}@example.com" for i in range(2 * BATCH + 2)]
    rig.seed(readers)
    rig.script.down = True
    rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    report = rig.settle(edition_id, until=("paused",))
    assert report["error"].startswith("5 temporary SMTP failures in a row, last: 451")
    assert rig.script.copies() == {}
    # Nothing sends while paused, even past the lease: the reconciler leaves it alone.
    import time
    time.sleep(1.5)
    rig.settle(edition_id, lease=1, until=("paused",))
    _all_queued_unspent(rig, edition_id)

    rig.script.down = False
    client = rig.client()
    r = client.post(f"/api/editions/{edition_id}/resume", headers=AUTH)
    assert r.status_code == 200 and r.json()["queued"] == len(readers), r.text
    assert client.post(f"/api/editions/{edition_id}/resume", headers=AUTH).status_code == 409
    report = rig.settle(edition_id)
    assert copies_by_reader(rig.script, readers) == {e: 1 for e in readers}
    assert report["counts"]["sent"] == len(readers) and report["error"] is None


def test_refused_credentials_pause_at_once_and_cli_resume_continues(auth_rig) -> None:
    rig = auth_rig
    readers = [f"reader{i:02d}@example.com" for i in range(BATCH + 2)]
    rig.seed(readers)
    rig.script.credentials_ok = False
    rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    report = rig.settle(edition_id, until=("paused",))
    assert report["error"].startswith("SMTP auth failed: 535"), report["error"]
    _all_queued_unspent(rig, edition_id)

    rig.script.credentials_ok = True  # the operator fixed the relay's password
    out = CliRunner().invoke(cli, ["resume", str(edition_id)])
    assert out.exit_code == 0, out.output
    report = rig.settle(edition_id)
    assert copies_by_reader(rig.script, readers) == {e: 1 for e in readers}
    assert CliRunner().invoke(cli, ["resume", str(edition_id)]).exit_code == 1
