"""A CSV import started in the console runs in a worker, a chunk at a time, and the page
shows its progress.

The file is kept in ``reader_imports`` until a worker has read it (then dropped: it holds
addresses), and an outbox event asks a worker to run it. Each chunk of rows is committed
with the count of rows done, so the page polls a number that is true, and a worker that
dies part-way leaves every chunk it committed: the import can run again from the top (an
import is idempotent: rows already in come out ``unchanged``).
"""

from __future__ import annotations

import io
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.errors import ImportNotFound, ImportRowError
from newsletter.models import ReaderImport, utcnow
from newsletter.readers import imports
from newsletter.states import ImportStatus

# A run silent this long died with its worker (longer than the task's 30-minute hard limit):
# the import may be run again.
STALE_AFTER = timedelta(minutes=35)
# Reasons kept for the page (each with its line): enough to fix a file, bounded for a bad one.
MAX_REASONS = 100


def decode(data: bytes) -> str:
    """The file's text (UTF-8, a byte-order mark allowed); ImportRowError when it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRowError("the file is not UTF-8 text: save it as “CSV UTF-8” and try "
                             "again") from None


def start(session: Session, actor: str, filename: str, text: str) -> ReaderImport:
    """Check the file's header, count its rows and queue the import for a worker."""
    total = sum(1 for _ in imports.read_csv_rows(io.StringIO(text)))
    if total == 0:
        raise ImportRowError("the file has a header but no rows")
    job = ReaderImport(actor=actor, filename=filename[:255], content=text, total_rows=total,
                       done_rows=0, status=ImportStatus.QUEUED, created_at=utcnow())
    session.add(job)
    session.flush()
    events.record(session, events.READERS_IMPORT_REQUESTED, import_id=job.id)
    return job


def get(session: Session, import_id: int) -> ReaderImport:
    job = session.get(ReaderImport, import_id)
    if job is None:
        raise ImportNotFound(f"no import {import_id}")
    return job


def running(session: Session, import_id: int) -> bool:
    """Whether a worker holds the import (or held it and died)."""
    return get(session, import_id).status == ImportStatus.RUNNING


def run(session: Session, import_id: int) -> bool:
    """Run a queued import (or one whose worker died); False when it is not ours to run."""
    if not _claim(session, import_id):
        return False
    job = get(session, import_id)
    text = job.content or ""

    def progress(rows: int) -> None:
        job.done_rows = min(job.done_rows + rows, job.total_rows)
        session.commit()  # the chunk and its count together

    try:
        rows = imports.read_csv_rows(io.StringIO(text))
        result = imports.import_readers(session, rows, first_row=2, progress=progress)
    except Exception as exc:
        session.rollback()
        _finish(session, job, ImportStatus.FAILED, None, f"{type(exc).__name__}: {exc}")
        raise
    done = result.as_dict()
    done["errors"] = done["errors"][:MAX_REASONS]
    _finish(session, job, ImportStatus.DONE, done, None)
    return True


def _claim(session: Session, import_id: int) -> bool:
    now = utcnow()
    claimed = session.execute(
        update(ReaderImport).where(ReaderImport.id == import_id, or_(
            ReaderImport.status == ImportStatus.QUEUED,
            (ReaderImport.status == ImportStatus.RUNNING)
            & (ReaderImport.started_at < now - STALE_AFTER)))
        .values(status=ImportStatus.RUNNING, started_at=now, done_rows=0)
        .execution_options(synchronize_session=False))
    session.commit()
    return claimed.rowcount == 1


def _finish(session: Session, job: ReaderImport, status: ImportStatus, result: dict | None,
            error: str | None) -> None:
    job.status, job.result, job.error = status, result, error and error[:500]
    job.content = None  # read: the addresses now live only where the import put them
    job.done_rows = job.total_rows if status is ImportStatus.DONE else job.done_rows
    job.finished_at = utcnow()
    session.commit()
