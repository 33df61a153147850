"""Two real ``celery beat`` processes on one broker and database, a real worker, and the
schedule due now: exactly one daily edition for the period, and counting by Message-ID at
the SMTP server, exactly one copy per reader.

Each beat keeps its own schedule file (``--schedule``), as two beats on two hosts would;
they share everything else.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime

from sqlalchemy import select

from newsletter import db, processes
from newsletter.config import child_env, reload_settings
from newsletter.editions import requests as editions
from newsletter.models import Edition
from tests.reliability.conftest import copies_by_reader

READERS = [f"daily{i:02d}@example.com" for i in range(7)]
TICKS = 5  # per beat, at one a second


def start_beat(env: dict[str, str], n: int, var) -> tuple[subprocess.Popen, object]:
    log = var / f"beat-{n}.log"
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([*processes.beat_command(), f"--schedule={var / f'beat-{n}.db'}"],
                            env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def ticks(log) -> int:
    return log.read_text(errors="replace").count("Sending due task schedule-tick")


def test_two_beats_request_one_daily_edition_and_send_one_copy_each(rig) -> None:
    now = datetime.now(UTC)
    # The daily send hour is this hour, so the period is due now (and stays due across an
    # hour change: the latest instant is still today's); weekly is not due this week.
    os.environ.update(NEWSLETTER_TIMEZONE="UTC", NEWSLETTER_DAILY_SEND_HOUR=str(now.hour),
                      NEWSLETTER_WEEKLY_SEND_WEEKDAY=str((now.weekday() + 3) % 7),
                      NEWSLETTER_SCHEDULE_TICK_S="1", NEWSLETTER_SCHEDULE_GRACE_HOURS="2")
    settings = reload_settings()
    rig.seed(READERS)
    rig.start_worker(concurrency=2)
    env = child_env(settings)
    beats = [start_beat(env, n, rig.var) for n in (1, 2)]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if all(ticks(log) >= TICKS for _, log in beats):
                break
            assert all(proc.poll() is None for proc, _ in beats), rig.logs()
            time.sleep(0.3)
        else:
            raise AssertionError(f"beats did not tick: {rig.logs()}")
    finally:
        for proc, _ in beats:
            processes.stop(proc, timeout=10)
    assert all(proc.returncode is not None for proc, _ in beats)

    with db.session_scope() as session:
        scheduled = session.scalars(select(Edition).where(Edition.source == "schedule")).all()
        assert [(e.kind, e.frequency) for e in scheduled] == [("digest", "daily")], scheduled
        edition_id = scheduled[0].id
        assert scheduled[0].period_key == editions.period_key("daily", now)
    report = rig.settle(edition_id)
    assert report["counts"]["sent"] == len(READERS), report
    assert copies_by_reader(rig.script, READERS) == {e: 1 for e in READERS}
    # Both beats' ticks reached the worker: the one edition is not for lack of trying.
    worker_log = "".join(p.read_text(errors="replace") for p in rig.var.glob("worker-*.log"))
    assert worker_log.count("newsletter.schedule_tick") >= 2 * TICKS, rig.logs()[-3000:]
