"""The story-link redirect (/r/) under load: the real web app as operators run it (`newsletter
web`, one process per core) on PostgreSQL, paced clients following the links of one edition
at a fixed rate, each request's latency counted from when it was due (no coordinated
omission, as bench/phases/subscribe.py). Then it checks that every click was counted (the
counts are written every CLICK_FLUSH_SECONDS: a lost or doubled click shows here).
Target: p99 under 10 ms at 500 clicks/s.

    .venv/bin/python -m bench.clicks [--rate 500] [--seconds 20] [--clients 50] [--articles 300]
    .venv/bin/python -m bench.clicks --rate 50 --seconds 3     # a quick look that it works

Needs PostgreSQL as bench/run.py does (BENCH_PG) and its Redis (BENCH_REDIS: the app's broker,
though clicks never touch it). The load generator runs on the same machine: on 2 cores it
takes some of the CPU the server would have.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import time
from dataclasses import dataclass, field

from sqlalchemy import create_engine, func, select, text

from bench import processes
from bench.config import free_port
from bench.phases.subscribe import _start_web, _stop_web, _wait_for_page
from bench.seeding import drop_database, fresh_database, seed

TARGET_P99_MS = 10.0
# A phone's Safari: counted (a program's agent this soon after sending would not be).
AGENT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


@dataclass
class Load:
    port: int
    clients: int
    paths: list[str]
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def request(self, i: int) -> bytes:
        return (f"GET {self.paths[i % len(self.paths)]} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nUser-Agent: {AGENT}\r\n\r\n").encode()

    async def run(self, count: int, rate: float) -> dict:
        self.latencies, self.statuses = [], {}
        interval = self.clients / rate
        t0 = time.perf_counter() + 0.05
        await asyncio.gather(*(self._client(k, t0, count, interval) for k in range(self.clients)))
        elapsed = time.perf_counter() - t0
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, math.ceil(len(lat) * p) - 1)] * 1000, 2)

        return {"requests": count, "clients": self.clients, "offered_per_s": rate,
                "per_s": round(count / elapsed, 1), "p50_ms": pct(0.5), "p95_ms": pct(0.95),
                "p99_ms": pct(0.99), "max_ms": round(lat[-1] * 1000, 2),
                "statuses": self.statuses}

    async def _client(self, k: int, t0: float, count: int, interval: float) -> None:
        # HTTP/1.1 by hand over one keep-alive connection (httpx's own CPU would be measured).
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for n, i in enumerate(range(k, count, self.clients)):
                due = t0 + (k / self.clients + n) * interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                writer.write(self.request(i))
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                await reader.readexactly(int(match.group(1)) if match else 0)
                self.latencies.append(time.perf_counter() - due)
                status = int(head[9:12])
                self.statuses[status] = self.statuses.get(status, 0) + 1
        finally:
            writer.close()


def links(url: str, articles: int) -> list[str]:
    """An edition (sent an hour ago) and the /r/ paths of its stories, most clicks on a few."""
    from newsletter import click_links

    with create_engine(url).begin() as conn:
        edition = conn.execute(text(
            "INSERT INTO editions (kind, frequency, dry_run, source, status, cutoff_at, "
            "requested_at, started_at, finished_at, distinct_digests) VALUES ('digest', "
            "'weekly', false, 'api', 'done', now(), now(), now() - interval '1 hour', "
            "now() - interval '1 hour', 1) RETURNING id")).scalar_one()
        rows = conn.execute(text("SELECT article_id, min(tag_id) FROM article_tags "
                                 "GROUP BY article_id ORDER BY article_id LIMIT :n"),
                            {"n": articles}).all()
    rng = random.Random(1)
    # Zipf-like: the lead stories take most clicks, as on a real edition.
    weights = [1 / (rank + 1) for rank in range(len(rows))]
    chosen = rng.choices(rows, weights, k=5000)
    return [f"/r/{click_links.story_token(edition, a, t)}" for a, t in chosen]


def counted() -> int:
    from newsletter import db
    from newsletter.models import StoryClicks

    with db.session_scope() as session:
        return session.scalar(select(func.coalesce(func.sum(StoryClicks.clicks), 0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--articles", type=int, default=300)
    # The same paced load on /healthz (no token, no counting, but a database round trip per
    # request): the web stack's latency on these cores next to the redirect's.
    parser.add_argument("--baseline", action="store_true", help="load /healthz instead of /r/")
    args = parser.parse_args()
    from newsletter import db

    name = f"bench_clicks_{os.getpid()}"
    url = fresh_database(name)
    web = None
    try:
        seed(url, 0, args.articles)
        env = processes.configure(url, "smtp://127.0.0.1:9",
                                  NEWSLETTER_BASE_URL="https://news.example",
                                  NEWSLETTER_SECRET_KEY="bench-secret-key-0123456789abcdef0123",
                                  NEWSLETTER_HASH_KEY="bench-hash-key-0123456789abcdef01234567",
                                  NEWSLETTER_WEB_WORKERS=str(os.cpu_count() or 1))
        paths = links(url, args.articles)
        if args.baseline:
            paths = ["/healthz"] * len(paths)
        port = free_port()
        web = _start_web(env, port)
        _wait_for_page(port)
        load = Load(port, args.clients, paths)
        asyncio.run(load.run(min(200, int(args.rate)), args.rate))  # warm: routes, pools
        time.sleep(2)
        warm = counted()
        result = asyncio.run(load.run(int(args.rate * args.seconds), args.rate))
        _stop_web(web)  # a clean stop writes what each process still holds
        web = None
        result["counted"] = counted() - warm
        load_avg = os.getloadavg()[0]
        path = "/healthz" if args.baseline else "/r/"
        print(f"{path} at {args.rate:.0f}/s for {args.seconds:.0f} s, {args.clients} clients, "
              f"{os.cpu_count()} cores (load average {load_avg:.1f})")
        for key, value in result.items():
            print(f"  {key:14} {value}")
        ok = result["p99_ms"] < TARGET_P99_MS and result["counted"] == result["requests"]
        print("  target         " + ("met" if ok else "NOT met") +
              f" (p99 < {TARGET_P99_MS} ms, every click counted once)")
    finally:
        if web is not None:
            _stop_web(web)
        db.dispose_engines()
        drop_database(name)


if __name__ == "__main__":
    main()
