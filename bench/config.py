"""Where the benchmark runs: servers, paths, the worker's size, and two small helpers."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/8")
VAR = ROOT / "var" / "bench"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
RESULTS_JSONL = ROOT / "bench" / "results.jsonl"
PEER = Path(os.environ.get("BENCH_PEER", ROOT.parent / "shared" / "peers" / "django_newsletter.sh"))
PEER_DIR = Path(os.environ.get("BENCH_PEER_DIR", "/tmp/nl-peer"))
TAGS = 40
# Readers' time zones for `--zones N` (the first N, readers spread over them in turn): one
# per hour of offset from UTC-10 to UTC+13 (24), with DST zones of both hemispheres among
# them, so planning meets as many distinct release times as a world-wide list has.
ZONES = ("UTC", "Asia/Amman", "America/Los_Angeles", "Europe/London", "Asia/Tokyo",
         "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney",
         "America/Sao_Paulo", "Asia/Dubai", "Africa/Lagos", "Asia/Shanghai",
         "America/Chicago", "Pacific/Auckland", "Asia/Karachi", "America/Denver",
         "Asia/Bangkok", "Atlantic/Azores", "Pacific/Honolulu", "America/Anchorage",
         "Asia/Dhaka", "Pacific/Noumea", "America/Halifax")
# Worker pool size = SMTP connections (the ceiling uses as many); default: the cores.
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", os.cpu_count() or 2))


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
