"""The readers' room as the console reads it, on each backend: readers by the start of their
address, the suppression list searched by a typed address and lifted, bounce reports by kind,
and a console CSV import run chunk by chunk (readers.import_jobs)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from newsletter import db, events
from newsletter.errors import ImportNotFound, ImportRowError, SuppressionNotFound
from newsletter.models import BounceEvent, OutboxEvent, Reader, ReaderImport
from newsletter.readers import bounce_log, consent, directory, import_jobs, suppressions
from newsletter.states import ImportStatus
from tests.conftest import offer_topics

pytestmark = pytest.mark.usefixtures("fresh")


def add_readers(*emails: str) -> None:
    with db.session_scope() as session:
        session.add_all(Reader(email=e, status="active") for e in emails)


def test_readers_are_found_by_the_start_of_the_address_never_by_a_wildcard() -> None:
    add_readers("ali@example.org", "alina@example.net", "natali@example.org", "a_b@example.org",
                "axb@example.org")
    with db.session_scope() as session:
        def found(address: str, status: str = "") -> list[str]:
            where = directory.ReaderFilter(address=address, status=status)
            rows = directory.readers(session, where, 25, 0)
            assert directory.count_readers(session, where) == len(rows)
            return [r.email for r in rows]

        assert found(" ALI") == ["ali@example.org", "alina@example.net"]  # by address
        assert found("a_") == ["a_b@example.org"]  # _ and % are characters, not wildcards
        assert found("%ali") == [] and found("ali", "pending") == []
        assert found("")[0] == "axb@example.org"  # no search: newest first
        with pytest.raises(Exception, match="no reader"):
            directory.reader(session, 999_999)


def test_the_suppression_list_is_searched_by_address_and_lifted_by_entry() -> None:
    with db.session_scope() as session:
        consent.suppress(session, "Gone@Example.org", "erased")
        consent.suppress(session, "full@example.org", "bounce")
    with db.session_scope() as session:
        assert suppressions.count(session) == 2 and suppressions.count(session, "bounce") == 1
        entry = suppressions.find(session, "gone@example.org")
        assert entry is not None and entry.reason == "erased"
        assert suppressions.find(session, "other@example.org") is None
        assert [e.reason for e in suppressions.entries(session, 25, 0, "erased")] == ["erased"]
        lifted = suppressions.lift(session, entry.id)
        assert lifted.reason == "erased"
    with db.session_scope() as session:
        assert not consent.is_suppressed(session, "gone@example.org")
        assert consent.is_suppressed(session, "full@example.org")
        with pytest.raises(SuppressionNotFound):
            suppressions.lift(session, entry.id)


def test_bounce_reports_by_kind_and_the_recent_counts_leave_out_unmatched_ones() -> None:
    with db.session_scope() as session:
        for n, (kind, unmatched) in enumerate([("hard", None), ("soft", None),
                                               ("complaint", None), ("hard", "no message")]):
            session.add(BounceEvent(kind=kind, source="mailbox", dedupe_key=f"k{n}",
                                    unmatched=unmatched))
    with db.session_scope() as session:
        assert bounce_log.count(session) == 4 and bounce_log.count(session, "hard") == 2
        assert bounce_log.recent_counts(session) == {"hard": 1, "soft": 1, "complaint": 1}
        assert [e.kind for e in bounce_log.events(session, 25, 0, "complaint")] == ["complaint"]


CSV = ("email,topics,consent_date\n" + "".join(
    f"reader{n}@example.org,syria,2025-01-01\n" for n in range(2500)) + "bad,syria,\n")


def test_a_console_import_is_queued_then_run_a_chunk_at_a_time() -> None:
    with db.session_scope() as session:
        offer_topics(session, "Syria")  # readers follow topics an editor offered
    with db.session_scope() as session:
        job = import_jobs.start(session, "chief@news.example", "list.csv", CSV)
        assert (job.status, job.total_rows) == (ImportStatus.QUEUED, 2501)
        job_id = job.id
        [event] = session.scalars(select(OutboxEvent).where(
            OutboxEvent.name == events.READERS_IMPORT_REQUESTED)).all()
        assert event.payload == {"import_id": job_id}
        session.rollback()  # not dispatched: this test runs it itself
    with db.session_scope() as session:
        job = import_jobs.start(session, "chief@news.example", "list.csv", CSV)
        job_id = job.id
    seen: list[tuple[int, int]] = []  # (rows done, readers in the database), at each commit
    with db.session_scope() as session, db.session_scope() as watcher:
        original = session.commit

        def commit() -> None:
            original()
            # Another connection sees the rows done so far, and the readers they made.
            job_now = watcher.get(ReaderImport, job_id, populate_existing=True)
            seen.append((job_now.done_rows, watcher.scalar(select(func.count(Reader.id)))))
            watcher.rollback()

        session.commit = commit  # observed, not changed: each real commit, then a look
        assert import_jobs.run(session, job_id)
    assert seen[1:4] == [(1000, 1000), (2000, 2000), (2501, 2500)]
    with db.session_scope() as session:
        job = import_jobs.get(session, job_id)
        assert job.status == ImportStatus.DONE and job.content is None
        assert job.result["created"] == 2500 and job.result["skipped"] == 1
        assert job.result["errors"][0]["row"] == 2502
        assert not import_jobs.run(session, job_id)  # done: never run twice
        with pytest.raises(ImportNotFound):
            import_jobs.get(session, 999_999)


@pytest.mark.parametrize("text, why", [("address\nx@example.org\n", "'email' column"),
                                       ("email\n", "no rows")])
def test_a_file_that_cannot_be_imported_is_refused_before_anything_is_queued(text, why) -> None:
    with db.session_scope() as session, pytest.raises(ImportRowError, match=why):
        import_jobs.start(session, "chief@news.example", "x.csv", text)
    with pytest.raises(ImportRowError, match="UTF-8"):
        import_jobs.decode(b"email\n\xff\n")
    assert import_jobs.decode("\ufeffemail\n".encode()) == "email\n"


def test_a_claimed_import_is_not_run_twice_until_its_claim_is_stale() -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from newsletter.models import utcnow

    with db.session_scope() as session:
        offer_topics(session, "Syria")  # readers follow topics an editor offered
        job_id = import_jobs.start(session, "chief@news.example", "x.csv",
                                   "email,topics\nr@example.org,syria\n").id
    with db.session_scope() as session:
        session.execute(update(ReaderImport).values(status=ImportStatus.RUNNING,
                                                    started_at=utcnow()))
    with db.session_scope() as session:
        assert not import_jobs.run(session, job_id) and import_jobs.running(session, job_id)
        session.execute(update(ReaderImport).values(
            started_at=utcnow() - import_jobs.STALE_AFTER - timedelta(seconds=1)))
    with db.session_scope() as session:
        assert import_jobs.run(session, job_id)  # its worker died: run again, from the top
        assert not import_jobs.running(session, job_id)
        assert session.scalar(select(func.count(Reader.id))) == 1
