"""The edition phase: seed readers, start a worker, send one weekly edition, measure it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench import processes
from bench.config import ROOT, log
from bench.seeding import drop_database, fresh_database, seed


def run_edition(readers: int, articles: int, sink, tag: str,
                profile: bool = False, zones: int = 0, languages: tuple[str, ...] = (),
                **extra_env: str) -> dict:
    """Seed a fresh database, start a worker, send one weekly edition, measure it.

    With ``zones`` (≥ 1) the readers are spread over that many time zones and the edition
    is the schedule's (planned with a release time per zone, editions/waves.py), for last
    week's period: every wave is due, so it is sent through as the editor's edition is.
    ``languages``: articles in each in turn, readers reading one or both (seeding.py)."""
    from newsletter import db

    name = f"bench_{tag}_{os.getpid()}"
    log(f"[{tag}] fresh database {name}, seeding {readers} readers / {articles} articles")
    url = fresh_database(name)
    seed(url, readers, articles, zones=zones, languages=languages)
    env = processes.configure(url, sink.url, **extra_env)
    worker = processes.start_worker(env, tag)
    spy = _profiler(worker.pid, tag) if profile else None
    try:
        edition_id, status, wall = _send_edition(tag, scheduled=zones > 0)
        rss = processes.peak_rss_mb(worker.pid)
        cpu_s = processes.cpu_seconds(worker.pid)
        mdir = processes.metrics_dir(worker.pid)
        result = {"readers": readers, "articles": articles, "zones": zones, "status": status,
                  **_figures(edition_id), "wall_seconds": round(wall, 2),
                  "peak_rss_mb": rss, "peak_rss_total_mb": round(sum(rss.values()), 1),
                  "worker_cpu_s": cpu_s,
                  "premailer_calls": processes.counter(mdir),
                  "digest_renders": processes.counter(mdir, "newsletter_digest_renders_total")}
        log(f"[{tag}] {status}: {result['sent']} sent in {result['seconds']:.1f}s = "
            f"{result['emails_per_s']}/s, {result['distinct_digests']} distinct digests, "
            f"premailer {result['premailer_calls']}, peak RSS {result['peak_rss_total_mb']} MB")
        return _ordered(result)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(60)
        from newsletter import processes as newsletter_processes

        newsletter_processes.stop(worker)
        db.dispose_engines()
        drop_database(name)


def _profiler(pid: int, tag: str) -> subprocess.Popen | None:
    """py-spy on the worker and its pool, written to bench/profile-<tag>.txt."""
    spy_bin = str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy_bin):
        return None
    out = ROOT / "bench" / f"profile-{tag}.txt"
    spy = subprocess.Popen(
        [spy_bin, "record", "--pid", str(pid), "--subprocesses", "--format",
         "raw", "--rate", "50", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return spy


def _send_edition(tag: str, scheduled: bool = False) -> tuple[int, str, float]:
    """Request the weekly edition and wait until it is done: (id, status, wall seconds)."""
    from newsletter import db
    from newsletter.editions import requests as editions
    from newsletter.editions import schedule
    from newsletter.models import Edition

    log(f"[{tag}] requesting the {'scheduled ' if scheduled else ''}edition")
    t0 = time.time()
    with db.session_scope() as s:
        if scheduled:
            # Last week's period: its send hour has passed in every zone.
            period = schedule.latest_due(
                "weekly", datetime.now(UTC) - timedelta(days=8)).period
            edition_id = editions.request(s, "weekly", source=schedule.SOURCE,
                                          period=period).id
        else:
            edition_id = editions.request(s, "weekly", source="bench").id
        s.commit()
    status = "planning"
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with db.session_scope() as s:
            status = s.scalar(select(Edition.status).where(Edition.id == edition_id))
        if status in ("done", "failed", "paused"):
            break
    return edition_id, status, time.time() - t0


def _figures(edition_id: int) -> dict:
    """What the rows say: sent, the span from first plan to last delivery, and when planning
    and the edition finished (planning runs while sending goes on)."""
    from newsletter import db
    from newsletter.models import Delivery, Edition

    with db.session_scope() as s:
        e = s.get(Edition, edition_id)
        started, finished, distinct = e.started_at, e.finished_at, e.distinct_digests
        first_sent, last_sent, last_planned = s.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at),
                   func.max(Delivery.created_at))
            .where(Delivery.edition_id == edition_id)).one()
        counts = dict(s.execute(select(Delivery.status, func.count())
                                .where(Delivery.edition_id == edition_id)
                                .group_by(Delivery.status)).all())
    sent = counts.get("sent", 0)
    span = (last_sent - started).total_seconds() if last_sent else float("nan")
    return {"counts": counts, "sent": sent, "seconds": round(span, 2),
            "emails_per_s": round(sent / span, 1) if sent and span > 0 else None,
            "distinct_digests": distinct,
            "plan_to_first_send_s": _after(started, first_sent),
            "planning_s": _after(started, last_planned),
            "done_after_s": _after(started, finished)}


def _after(start: datetime, at: datetime | None) -> float | None:
    return round((at - start).total_seconds(), 2) if at else None


_KEYS = ("readers", "articles", "zones", "status", "counts", "sent", "seconds",
         "wall_seconds",
         "emails_per_s", "distinct_digests", "plan_to_first_send_s", "planning_s",
         "done_after_s", "peak_rss_mb", "peak_rss_total_mb", "worker_cpu_s", "premailer_calls",
         "digest_renders")


def _ordered(result: dict) -> dict:
    # The raw figures in RESULTS.md keep the order they always had, so runs compare by eye.
    return {k: result[k] for k in _KEYS}
