"""The worker the phases measure: configured like an operator's, started as a real
``celery worker``, and read from /proc and its Prometheus files while it runs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import redis

from bench.config import CONCURRENCY, REDIS_URL, VAR


def configure(url: str, smtp_url: str, **extra: str) -> dict[str, str]:
    """Point this process's settings at ``url`` and ``smtp_url``; the environment a worker or
    web process started from here sees the same."""
    from newsletter.config import child_env, reload_settings

    VAR.mkdir(parents=True, exist_ok=True)
    os.environ.update(NEWSLETTER_VAR_DIR=str(VAR), NEWSLETTER_DATABASE_URL=url,
                      NEWSLETTER_BROKER_URL=REDIS_URL, NEWSLETTER_SMTP_URL=smtp_url,
                      NEWSLETTER_LOG_LEVEL="WARNING", **extra)
    from newsletter import db

    db.dispose_engines()
    settings = reload_settings()
    return child_env(settings)


def start_worker(env: dict[str, str], name: str):
    from newsletter import processes

    redis.Redis.from_url(REDIS_URL).flushdb()
    logfile = VAR / f"worker-{name}.log"
    logfile.unlink(missing_ok=True)
    proc = processes.start_worker(env, concurrency=CONCURRENCY, logfile=logfile,
                                  loglevel="WARNING")
    # "ready." is logged at INFO; at WARNING wait for the pool children instead.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited; see {logfile}")
        if len(children(proc.pid)) >= CONCURRENCY:
            time.sleep(1.0)
            return proc
        time.sleep(0.1)
    raise TimeoutError(f"worker not ready; see {logfile}")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def peak_rss_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) of the worker's main process and its pool children."""
    out = {}
    for p in [pid, *children(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        if m:
            out[str(p)] = int(m.group(1)) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the worker's main process and its pool children so far: less
    swayed than a rate by what else the shared machine runs (the A/B runs read it)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return round(total / os.sysconf("SC_CLK_TCK"), 2)


def metrics_dir(pid: int) -> str | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in env:
        if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return item.split(b"=", 1)[1].decode()
    return None


def counter(directory: str | None, name: str = "newsletter_premailer_runs_total") -> int | None:
    """A counter (premailer runs by default) summed over the worker's pool processes."""
    if not directory:
        return None
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                total += sample.value
    return int(total)
