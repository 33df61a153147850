"""The subscribe phase: the real web app as operators run it; 50 concurrent clients
POST /subscribe, saturated and then paced at the target's rate.

Saturated: each client sends its next request as soon as the last is answered (a closed
loop), which gives the most the server answers per second; its latency is then mostly
queueing, mean = clients / throughput (Little's law), so it says little of a request's own
cost. Paced: the same 50 clients together offer ``paced_rate`` requests a second, each on a
fixed schedule, and a request's latency counts from when it was due, not when it was sent (a
late schedule is not forgiven: no coordinated omission). That is the latency a reader sees
while the site takes the target rate.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

from sqlalchemy import func, select

from bench import processes
from bench.config import ROOT, VAR, free_port
from bench.seeding import drop_database, fresh_database, seed


def subscribe_throughput(total: int, clients: int = 50, paced_rate: float = 300.0,
                         paced_seconds: float = 10.0) -> dict:
    """The real web app; 50 concurrent clients POST /subscribe, saturated then paced."""
    from newsletter import db

    name = f"bench_web_{os.getpid()}"
    url = fresh_database(name)
    seed(url, 0, 0)
    # Served the way operators run it: `newsletter web`, one process per core.
    env = processes.configure(url, "smtp://127.0.0.1:9", NEWSLETTER_SUBSCRIBE_RATE_LIMIT="",
                              NEWSLETTER_FORM_MIN_SECONDS="0",
                              NEWSLETTER_WEB_WORKERS=str(os.cpu_count() or 1))
    port = free_port()
    web = _start_web(env, port)
    try:
        _wait_for_page(port)
        load = Load(port, clients)
        saturated = asyncio.run(load.run("sub", total, None))
        paced = asyncio.run(load.run("paced", int(paced_rate * paced_seconds),
                                     clients / paced_rate))
        paced["offered_per_s"] = paced_rate
        return {**saturated, "paced": paced}
    finally:
        _stop_web(web)
        db.dispose_engines()
        drop_database(name)


def _start_web(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name("newsletter")), "web",
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(VAR / "web.log", "wb"),  # noqa: SIM115
                            start_new_session=True)


def _stop_web(web: subprocess.Popen) -> None:
    web.terminate()
    try:
        web.wait(10)
    except subprocess.TimeoutExpired:  # open keep-alive connections can hold it up
        os.killpg(web.pid, signal.SIGKILL)  # the worker processes too, not only their parent
        web.wait()


def _wait_for_page(port: int) -> None:
    for _ in range(200):
        try:
            urlopen(f"http://127.0.0.1:{port}/subscribe", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the web server did not answer; see {VAR / 'web.log'}")


@dataclass
class Load:
    """``clients`` keep-alive connections posting the subscribe form, each post with a form
    token of its own (a token is spent on use: a reused one is refused, 422), minted here
    with the server's key before the clock starts, as the page would have served them."""

    port: int
    clients: int
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)

    def request(self, i: int, address: str) -> bytes:
        body = urlencode({"form_token": self.tokens[i], "email": address,
                          "topics": ["topic-00", "topic-03"], "frequency": "weekly",
                          "consent": "on"}, doseq=True).encode()
        return (f"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def run(self, prefix: str, count: int, interval: float | None) -> dict:
        """``count`` requests, as fast as answered (``interval`` None) or each client one
        every ``interval`` seconds; the figures, and how many readers were stored."""
        from newsletter import tokens

        self.latencies, self.statuses = [], {}
        self.tokens = [tokens.make_form_token() for _ in range(count)]
        t0 = time.perf_counter() + 0.05
        await asyncio.gather(*(self._client(k, t0, prefix, count, interval)
                               for k in range(self.clients)))
        elapsed = time.perf_counter() - t0
        lat = sorted(self.latencies)
        return {"requests": count, "clients": self.clients, "per_s": round(count / elapsed, 1),
                "p50_ms": round(lat[len(lat) // 2] * 1000, 1),
                "p99_ms": round(lat[min(len(lat) - 1, math.ceil(len(lat) * 0.99) - 1)] * 1000, 1),
                "statuses": self.statuses, "stored": _stored(prefix)}

    async def _client(self, k: int, t0: float, prefix: str, count: int,
                      interval: float | None) -> None:
        # HTTP/1.1 by hand over one keep-alive connection, as a browser would hold one.
        # httpx spent 4.6 ms of CPU per request on the same 2 cores as the server (a third
        # of what the server spent): the load generator must not be what is measured.
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for n, i in enumerate(range(k, count, self.clients)):
                due = time.perf_counter()
                if interval is not None:
                    due = t0 + (k / self.clients + n) * interval
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                writer.write(self.request(i, f"{prefix}{i}@example.org"))
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
                await reader.readexactly(length)
                self.latencies.append(time.perf_counter() - due)
                status = int(head[9:12])
                self.statuses[status] = self.statuses.get(status, 0) + 1
        finally:
            writer.close()


def _stored(prefix: str) -> int:
    from newsletter import db
    from newsletter.models import Reader

    with db.session_scope() as s:
        return s.scalar(select(func.count()).select_from(Reader)
                        .where(Reader.email.like(f"{prefix}%@example.org")))
