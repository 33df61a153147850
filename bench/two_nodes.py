"""Two worker nodes send one edition together: ``python -m bench.two_nodes --readers 100000``.

Each node is a separate ``celery worker`` with its own node name (``-n``), var directory and
metrics, as two hosts would run it, sharing PostgreSQL and Redis. Optionally one node is
SIGKILLed once ``--kill-at`` of the readers have their email; this process then plays beat
(``reconcile.tick`` every ``relay_interval_s``, the operators' default lease and holder
timeout) so the other node finishes the killed node's work.

Reports the per-second counts at the sink (smtp-sink dumping each message, a file's mtime
being its arrival), each node's share (its own Prometheus files), copies by Message-ID, and
how long after the kill the last delivery went out. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import redis

from bench import processes
from bench.config import REDIS_URL, VAR, log
from bench.phases.edition import _figures
from bench.seeding import drop_database, fresh_database, seed
from bench.sinks import Sink, smtp_sink_binary

NODES = ("sender1", "sender2")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readers", type=int, default=100_000)
    ap.add_argument("--articles", type=int, default=300)
    ap.add_argument("--rate", type=float, default=0,
                    help="NEWSLETTER_SMTP_RATE for both nodes together (0: unlimited)")
    ap.add_argument("--per-node", type=int, default=max(1, processes.CONCURRENCY // 2),
                    help="sending processes per node (default: half the cores each)")
    ap.add_argument("--kill-at", type=float, default=0.5,
                    help="SIGKILL sender1 once this share of readers is sent (0: no kill)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not smtp_sink_binary():
        raise SystemExit("bench/two_nodes.py needs postfix's smtp-sink (it dumps each message)")
    name = f"bench_two_nodes_{os.getpid()}"
    log(f"[two nodes] fresh database {name}, seeding {args.readers} readers")
    url = fresh_database(name)
    seed(url, args.readers, args.articles)
    sink = Sink(dump_dir=VAR / "two-nodes-mail")
    extra = {"NEWSLETTER_SMTP_RATE": str(args.rate)} if args.rate else {}
    env = processes.configure(url, sink.url, **extra)
    redis.Redis.from_url(REDIS_URL).flushdb()
    nodes = {n: _start_node(env, n, args.per_node) for n in NODES}
    try:
        result = _send(args, sink, nodes)
    finally:
        from newsletter import db
        from newsletter import processes as newsletter_processes

        for proc in nodes.values():
            newsletter_processes.stop(proc)
        sink.stop()
        db.dispose_engines()
        drop_database(name)
    print(json.dumps(result, indent=1))


def _start_node(env: dict[str, str], node: str, concurrency: int):
    """A worker node as a host of its own runs it: node name, var dir, metrics port."""
    from newsletter import processes as newsletter_processes

    var = VAR / node
    var.mkdir(parents=True, exist_ok=True)
    for old in (var / "metrics").glob("*/*.db"):
        old.unlink()  # an earlier run's counters would count as this node's share
    logfile = VAR / f"worker-{node}.log"
    logfile.unlink(missing_ok=True)
    node_env = {**env, "NEWSLETTER_VAR_DIR": str(var), "NEWSLETTER_WORKER_METRICS_PORT": "0"}
    proc = newsletter_processes.start_worker(node_env, concurrency=concurrency, logfile=logfile,
                                             loglevel="WARNING", node=f"{node}@%h")
    deadline = time.monotonic() + 60
    while len(processes.children(proc.pid)) < concurrency:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker node {node} did not start; see {logfile}")
        time.sleep(0.1)
    time.sleep(1.0)
    return proc


def _send(args: argparse.Namespace, sink: Sink, nodes: dict) -> dict:
    from sqlalchemy import select

    from newsletter import db
    from newsletter.config import get_settings
    from newsletter.editions import reconcile
    from newsletter.editions import requests as editions
    from newsletter.models import Edition

    with db.session_scope() as s:
        reconcile.tick(s)  # beat has been running: the fresh broker carries its epoch mark
        s.commit()
    with db.session_scope() as s:
        edition_id = editions.request(s, "weekly", source="bench").id
        s.commit()
    log(f"[two nodes] edition {edition_id} requested")
    killed_at, next_tick, status = None, time.monotonic(), "planning"
    every = get_settings().relay_interval_s
    deadline = time.monotonic() + 3600
    while status not in ("done", "failed", "paused") and time.monotonic() < deadline:
        time.sleep(0.5)
        if killed_at is None and args.kill_at and _arrived(sink) >= args.readers * args.kill_at:
            os.killpg(nodes[NODES[0]].pid, signal.SIGKILL)
            nodes[NODES[0]].wait()
            killed_at = time.time()
            log(f"[two nodes] {NODES[0]} SIGKILLed at {_arrived(sink)} sent")
        with db.session_scope() as s:
            if time.monotonic() >= next_tick:  # beat, on the surviving host
                reconcile.tick(s)
                s.commit()
                next_tick = time.monotonic() + every
            status = s.scalar(select(Edition.status).where(Edition.id == edition_id))
    return _report(args, sink, edition_id, status, killed_at)


def _arrived(sink: Sink) -> int:
    return sum(1 for _ in os.scandir(sink.dump_dir))


def _report(args, sink: Sink, edition_id: int, status: str, killed_at: float | None) -> dict:
    times, ids = [], Counter()
    for entry in os.scandir(sink.dump_dir):
        times.append(entry.stat().st_mtime)
        found = _MESSAGE_ID.search(Path(entry.path).read_bytes()[:16384])
        ids[found.group(1) if found else entry.name] += 1
    times.sort()
    per_second = Counter(int(t - times[0]) for t in times) if times else Counter()
    seconds = [per_second.get(i, 0) for i in range(max(per_second, default=-1) + 1)]
    figures = _figures(edition_id)
    last = max(times, default=0.0)
    return {"readers": args.readers, "status": status, "rate": args.rate,
            "per_node_processes": args.per_node, "sent": figures["sent"],
            "emails_per_s": figures["emails_per_s"], "seconds": figures["seconds"],
            "messages_at_sink": len(times), "distinct_message_ids": len(ids),
            "second_copies": sum(n - 1 for n in ids.values()),
            "per_node": (per_node := {n: _sent_by_node(VAR / n) for n in NODES}),
            # what the killed node's journal showed the relay took, recorded by the reconciler
            "recorded_from_journal": figures["sent"] - sum(per_node.values()),
            "killed": NODES[0] if killed_at else None,
            "last_delivery_after_kill_s": round(last - killed_at, 1) if killed_at else None,
            "max_per_second": max(seconds, default=0), "per_second": seconds}


def _sent_by_node(var: Path) -> int:
    """Emails a node counted as sent, from the Prometheus files in its own var dir."""
    return sum(processes.counter(str(d), "newsletter_emails_total") or 0
               for d in (var / "metrics").iterdir() if d.is_dir())


if __name__ == "__main__":
    main()
