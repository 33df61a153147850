"""Delivery benchmark: our pipeline, a raw SMTP ceiling and a peer, in one run.

    .venv/bin/python bench/run.py --quick       # ~2 minutes: 5k vs 10k readers
    .venv/bin/python bench/run.py                # full: 10k vs 100k readers

See bench/README.md for what each phase measures. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/8")
VAR = ROOT / "var" / "bench"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
RESULTS_JSONL = ROOT / "bench" / "results.jsonl"
PEER = Path(os.environ.get("BENCH_PEER", ROOT.parent / "shared" / "peers" / "django_newsletter.sh"))
PEER_DIR = Path(os.environ.get("BENCH_PEER_DIR", "/tmp/nl-peer"))
TAGS = 40
# Worker pool size = SMTP connections (the ceiling uses as many); default: the cores.
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", os.cpu_count() or 2))


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- sink

def smtp_sink_binary() -> str | None:
    for p in ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"):
        if os.path.exists(p):
            return p
    if shutil.which("apt-get") and os.geteuid() == 0:
        log("installing postfix for smtp-sink")
        subprocess.run(["apt-get", "install", "-y", "postfix"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"):
            if os.path.exists(p):
                return p
    return shutil.which("smtp-sink")


class Sink:
    """postfix's smtp-sink (C, cheap) when installed, else an aiosmtpd counting sink.

    With ``dump_dir`` smtp-sink writes each message to a file there, and a file's mtime is
    when its message arrived (the alert latency phase reads them).
    """

    def __init__(self, dump_dir: Path | None = None) -> None:
        self.port = free_port()
        binary = smtp_sink_binary()
        self.kind = "smtp-sink" if binary else "aiosmtpd"
        self.dump_dir = dump_dir
        if binary:
            dump = []
            if dump_dir is not None:
                shutil.rmtree(dump_dir, ignore_errors=True)
                dump_dir.mkdir(parents=True)
                dump_dir.chmod(0o777)  # smtp-sink drops to the postfix user
                dump = ["-d", f"{dump_dir}/m."]
            cmd = [binary, *(["-u", "postfix"] if os.geteuid() == 0 else []), *dump,
                   f"127.0.0.1:{self.port}", "1000"]
        else:
            cmd = [sys.executable, str(Path(__file__).with_name("sink.py")), str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def times(self) -> list[float]:
        return [e.stat().st_mtime for e in os.scandir(self.dump_dir)]

    def clear(self) -> None:
        for e in os.scandir(self.dump_dir):
            os.unlink(e.path)


class PeerSink:
    """The peer's own sink (``$PEER_DIR/sink.py``, aiosmtpd, written by the peer script), for
    the same-size comparison: both sides measured against the same kind of sink."""

    kind = "the peer's aiosmtpd sink"

    def __init__(self, peer_dir: Path) -> None:
        self.port = free_port()
        self.stats = peer_dir / "ours-sink.json"
        ready = peer_dir / "ours-ready"
        ready.unlink(missing_ok=True)
        self.stats.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(peer_dir / "sink.py"), "--port", str(self.port),
             "--stats", str(self.stats), "--ready", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            if ready.exists():
                break
            time.sleep(0.1)
        else:
            self.proc.kill()
            raise RuntimeError("the peer's sink did not start")
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> dict:
        self.proc.terminate()
        self.proc.wait(10)
        return json.loads(self.stats.read_text()) if self.stats.exists() else {}


class TimestampSink:
    """An in-process aiosmtpd sink that records when each message arrived (for latency)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.arrivals: list[tuple[float, bytes]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.arrivals.append((time.time(), envelope.original_content or b""))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.controller.stop()

    def times(self) -> list[float]:
        return [at for at, _ in self.arrivals]

    def clear(self) -> None:
        self.arrivals.clear()


# ---------------------------------------------------------------- database and data

def fresh_database(name: str) -> str:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
        # Each phase starts from a quiet server: the previous phase's dirty pages (the
        # 100,000-reader run writes gigabytes) are written now, not by a checkpoint spread
        # over the next phases (measured: subscribe p99 at 300/s 111 ms after the large run
        # against 43-59 ms alone). pgbench starts its runs the same way.
        c.execute(text("CHECKPOINT"))
    admin.dispose()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    from newsletter import db

    db.upgrade(url)
    return url


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def skewed(rng: random.Random, k: int, weights: list[float]) -> list[int]:
    """k distinct tag indexes drawn by popularity."""
    chosen: set[int] = set()
    while len(chosen) < k:
        chosen.add(rng.choices(range(TAGS), weights)[0])
    return sorted(chosen)


def seed(url: str, readers: int, articles: int, *, frequency: str = "weekly",
         reader_tags: tuple[int, int] = (1, 5), seed_value: int = 1) -> None:
    """Tags, a week of articles and active readers, written with COPY (fast for 100k)."""
    rng = random.Random(seed_value)
    # Zipf-like popularity: a few big stories (Syria, Russia) and a long tail.
    weights = [1 / (i + 1) ** 0.9 for i in range(TAGS)]
    article_weights = [1 / (i + 1) ** 0.5 for i in range(TAGS)]
    now = datetime.now(UTC)
    names = [f"Topic {i:02d} {w}" for i, w in
             enumerate(["Syria", "Russia", "Jordan", "Lebanon", "Iraq", "Egypt", "Iran",
                        "Turkey"] * 5)]
    eng = create_engine(url)
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY tags (id, slug, name) FROM STDIN") as cp:
            for i in range(TAGS):
                cp.write_row((i + 1, f"topic-{i:02d}", names[i]))
        # One topic per tag, as the migration turns a site's tags into topics.
        with cur.copy("COPY topics (id, slug, name, description, position, created_at) "
                      "FROM STDIN") as cp:
            for i in range(TAGS):
                cp.write_row((i + 1, f"topic-{i:02d}", names[i], "", i, now))
        with cur.copy("COPY topic_tags (topic_id, tag_id) FROM STDIN") as cp:
            for i in range(TAGS):
                cp.write_row((i + 1, i + 1))
        lorem = ("Officials said talks would resume next week as aid convoys waited at the "
                 "border crossing, while residents described a tense night in the capital. ")
        with cur.copy("COPY articles (id, url, title, summary, author, image_url, status, "
                      "published_at, created_at, updated_at) FROM STDIN") as cp:
            for a in range(articles):
                at = now - timedelta(minutes=10 + a * (7 * 24 * 60 - 60) // max(articles, 1))
                cp.write_row((a + 1, f"https://news.example.com/2026/story-{a + 1}",
                              f"Story {a + 1}: ceasefire talks, aid and the week ahead",
                              lorem, "Staff reporter",
                              f"https://img.example.com/{a + 1}.jpg", "published", at, at, at))
        with cur.copy("COPY article_tags (article_id, tag_id, position) FROM STDIN") as cp:
            for a in range(articles):
                # Mostly one topic, sometimes a second; milder skew than the readers'.
                for pos, t in enumerate(skewed(rng, rng.choice((1, 1, 2)), article_weights)):
                    cp.write_row((a + 1, t + 1, pos))
        with cur.copy("COPY readers (id, email, status, frequency, source, created_at, "
                      "confirmed_at) FROM STDIN") as cp:
            for r in range(readers):
                cp.write_row((r + 1, f"reader{r + 1}@example.org", "active", frequency,
                              "import", now - timedelta(days=30), now - timedelta(days=30)))
        with cur.copy("COPY reader_topics (reader_id, topic_id) FROM STDIN") as cp:
            for r in range(readers):
                for t in skewed(rng, rng.randint(*reader_tags), weights):
                    cp.write_row((r + 1, t + 1))
        for table in ("tags", "topics", "articles", "readers"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))")
        # Only the seeded tables: an ANALYZE of the still empty deliveries tables would tell the
        # planner they hold nothing, a state no real list is in.
        cur.execute("ANALYZE tags, topics, topic_tags, articles, article_tags, readers, "
                    "reader_topics")
        raw.commit()
    finally:
        raw.close()
        eng.dispose()


# ---------------------------------------------------------------- worker

def configure(url: str, smtp_url: str, **extra: str) -> dict[str, str]:
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


# ---------------------------------------------------------------- phases

def run_edition(readers: int, articles: int, sink: Sink | PeerSink, tag: str,
                profile: bool = False, **extra_env: str) -> dict:
    """Seed a fresh database, start a worker, send one weekly edition, measure it."""
    from newsletter import db
    from newsletter.editions import requests as editions
    from newsletter.models import Delivery, Edition

    name = f"bench_{tag}_{os.getpid()}"
    log(f"[{tag}] fresh database {name}, seeding {readers} readers / {articles} articles")
    url = fresh_database(name)
    seed(url, readers, articles)
    env = configure(url, sink.url, **extra_env)
    worker = start_worker(env, tag)
    spy = None
    try:
        spy_bin = str(Path(sys.executable).parent / "py-spy")
        if profile and os.path.exists(spy_bin):
            out = ROOT / "bench" / f"profile-{tag}.txt"
            spy = subprocess.Popen(
                [spy_bin, "record", "--pid", str(worker.pid), "--subprocesses", "--format",
                 "raw", "--rate", "50", "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        log(f"[{tag}] requesting the edition")
        t0 = time.time()
        with db.session_scope() as s:
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
        wall = time.time() - t0
        rss = peak_rss_mb(worker.pid)
        mdir = metrics_dir(worker.pid)
        with db.session_scope() as s:
            e = s.get(Edition, edition_id)
            started = e.started_at
            first_sent, last_sent, last_planned = s.execute(
                select(func.min(Delivery.sent_at), func.max(Delivery.sent_at),
                       func.max(Delivery.created_at))
                .where(Delivery.edition_id == edition_id)).one()
            finished = e.finished_at
            counts = dict(s.execute(select(Delivery.status, func.count())
                                    .where(Delivery.edition_id == edition_id)
                                    .group_by(Delivery.status)).all())
            distinct = e.distinct_digests
        sent = counts.get("sent", 0)
        span = (last_sent - started).total_seconds() if last_sent else float("nan")
        result = {
            "readers": readers, "articles": articles, "status": status, "counts": counts,
            "sent": sent, "seconds": round(span, 2), "wall_seconds": round(wall, 2),
            "emails_per_s": round(sent / span, 1) if sent and span > 0 else None,
            "distinct_digests": distinct,
            "plan_to_first_send_s": round((first_sent - started).total_seconds(), 2)
            if first_sent else None,
            # Planning runs while sending goes on; these show which of them finished last.
            "planning_s": round((last_planned - started).total_seconds(), 2)
            if last_planned else None,
            "done_after_s": round((finished - started).total_seconds(), 2) if finished else None,
            "peak_rss_mb": rss, "peak_rss_total_mb": round(sum(rss.values()), 1),
            "premailer_calls": premailer_calls(mdir),
            "digest_renders": premailer_calls(mdir, "newsletter_digest_renders_total"),
        }
        log(f"[{tag}] {status}: {sent} sent in {span:.1f}s = {result['emails_per_s']}/s, "
            f"{distinct} distinct digests, premailer {result['premailer_calls']}, "
            f"peak RSS {result['peak_rss_total_mb']} MB")
        return result
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(60)
        from newsletter import processes

        processes.stop(worker)
        db.dispose_engines()
        drop_database(name)


def metrics_dir(pid: int) -> str | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in env:
        if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return item.split(b"=", 1)[1].decode()
    return None


def premailer_calls(directory: str | None,
                    name: str = "newsletter_premailer_runs_total") -> int | None:
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


def sample_message(readers: int = 200, articles: int = 300, **extra_env: str) -> bytes:
    """A real digest message from our renderer (same content shape as the run)."""
    from newsletter import db
    from newsletter.editions import content
    from newsletter.editions import requests as editions
    from newsletter.mail import compose, rendering
    from newsletter.models import Delivery

    name = f"bench_sample_{os.getpid()}"
    url = fresh_database(name)
    seed(url, readers, articles)
    configure(url, "smtp://127.0.0.1:9", **extra_env)
    from newsletter import events
    from newsletter.editions import planning

    events.set_dispatcher(lambda *_: True)  # plan in-process, send nothing
    try:
        with db.session_scope() as s:
            edition_id = editions.request(s, "weekly", source="bench").id
            s.commit()
            planning.plan(s, edition_id)
            sizes = []
            msgs = []
            for d in s.scalars(select(Delivery).where(Delivery.edition_id == edition_id)
                               .order_by(Delivery.id).limit(50)):
                key = (d.edition_id, d.content_key)
                rendered = rendering.renderer().rendered_digest(content.load_batch(s, [key])[key])
                msg = compose.compose(rendered, compose.personal_links(d.reader_id, "r@example.org",
                                                                       edition_id), d.message_id)
                sizes.append(len(msg))
                msgs.append(msg)
        median = sorted(sizes)[len(sizes) // 2]
        return min(msgs, key=lambda m: abs(len(m) - median))
    finally:
        events.set_dispatcher(None)
        db.dispose_engines()
        drop_database(name)


def _ceiling_worker(port: int, message: bytes, count: int, out, client: str) -> None:
    if client == "smtplib":
        conn = smtplib.SMTP("127.0.0.1", port)
        for i in range(count):
            conn.sendmail("newsletter@localhost", [f"reader{i}@example.org"], message)
        conn.quit()
    else:  # our transport as send_batch uses it: one round trip a message, dot-stuffing in C
        from newsletter.mail.mailer import SmtpConfig, SmtpTransport

        with SmtpTransport(SmtpConfig("127.0.0.1", port)) as transport, \
                transport.pipeline() as smtp:
            for i in range(count):
                for _, failure in smtp.send("newsletter@localhost", f"reader{i}@example.org",
                                            message, i):
                    if failure is not None:
                        raise failure
            for _, failure in smtp.flush():
                if failure is not None:
                    raise failure
    out.put(count)


def ceiling(sink: Sink, message: bytes, total: int, client: str = "transport") -> float:
    """Prebuilt messages over CONCURRENCY SMTP connections (one per process) to the sink.

    ``client`` "transport" is the fastest client we have (the physical limit of this sink
    and loopback); "smtplib" is the standard library's sendmail, for reference.
    """
    q = multiprocessing.Queue()
    per = total // CONCURRENCY
    procs = [multiprocessing.Process(target=_ceiling_worker,
                                     args=(sink.port, message, per, q, client))
             for _ in range(CONCURRENCY)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    return per * CONCURRENCY / elapsed


def peer(n: int) -> float | None:
    if not PEER.exists():
        log(f"peer script not found at {PEER}")
        return None
    env = {**os.environ, "N": str(n), "RUNS": "1", "PORT": str(free_port()),
           "PEER_DIR": str(PEER_DIR)}
    proc = subprocess.run(["bash", str(PEER)], env=env, capture_output=True, text=True,
                          timeout=1200)
    out = proc.stdout + proc.stderr
    (VAR / "peer.log").write_text(out)
    m = re.findall(r"([\d.]+)\s*emails/s", out)
    if not m:
        log("peer produced no figure; see var/bench/peer.log")
        return None
    return float(m[-1])


def peer_message_bytes() -> int | None:
    """The peer's average message size, from its results.json."""
    try:
        return json.loads((PEER_DIR / "results.json").read_text())["avg_message_bytes"]
    except (OSError, KeyError, ValueError):
        return None


# The same-size run: a smaller week (fewer stories per digest) and three stories shown whole per
# topic give digests of ~36 kB on average (32 kB median), near the peer's 33 kB message.
SAME_SIZE_ARTICLES = 200
SAME_SIZE_LEAD = "3"


def same_size(readers: int) -> dict:
    """Our pipeline against the peer's kind of sink, with messages of the peer's size."""
    sink = PeerSink(PEER_DIR)
    try:
        run = run_edition(readers, SAME_SIZE_ARTICLES, sink, "same",
                          NEWSLETTER_DIGEST_LEAD_STORIES=SAME_SIZE_LEAD)
    finally:
        stats = sink.stop()
        os.environ.pop("NEWSLETTER_DIGEST_LEAD_STORIES", None)
    run["sink_stats"] = stats
    run["avg_message_bytes"] = stats.get("bytes", 0) // max(stats.get("messages", 0), 1)
    # What this sink takes at most: prebuilt messages of this shape over the same number of
    # connections. It is a Python process on the same 2 cores, so no sender, ours or the
    # peer's, can get more than this through it; the ratio to the peer is bounded by it.
    try:
        message = sample_message(articles=SAME_SIZE_ARTICLES,
                                 NEWSLETTER_DIGEST_LEAD_STORIES=SAME_SIZE_LEAD)
    finally:
        os.environ.pop("NEWSLETTER_DIGEST_LEAD_STORIES", None)
    sink = PeerSink(PEER_DIR)
    try:
        run["sink_ceiling_emails_per_s"] = round(
            ceiling(sink, message, min(readers, 10_000)), 1)
        run["sink_ceiling_message_bytes"] = len(message)
    finally:
        sink.stop()
    return run


def alert_latency(n: int = 1000) -> dict:
    """1,000 immediate readers, window 0: publish a story, time each message's arrival."""
    from newsletter import db
    from newsletter.newsroom import articles

    name = f"bench_alert_{os.getpid()}"
    url = fresh_database(name)
    seed(url, n, 0, frequency="immediate", reader_tags=(1, 1), seed_value=3)
    with create_engine(url).begin() as c:  # every reader follows topic 1
        c.execute(text("UPDATE reader_topics SET topic_id = 1"))
    # smtp-sink when installed (aiosmtpd in Python tops out near 1,000 small messages a
    # second on this machine, which would be measuring the sink).
    sink = Sink(VAR / "alert-sink") if smtp_sink_binary() else TimestampSink()
    env = configure(url, sink.url, NEWSLETTER_ALERT_WINDOW_S="0")
    worker = start_worker(env, "alert")
    try:
        # A warm-up story so the first measured one does not pay imports and connections.
        runs = []
        for k in range(2):
            sink.clear()
            t0 = time.time()
            with db.session_scope() as s:
                articles.publish(s, {"url": f"https://news.example.com/alert-{k}",
                                     "title": "Breaking: ceasefire announced",
                                     "summary": "Talks concluded overnight.", "tags": ["topic-00"]})
                s.commit()
            deadline = time.monotonic() + 120
            while len(sink.times()) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            runs.append(sorted(a - t0 for a in sink.times()))
            time.sleep(1)
        lat = runs[-1]
        if len(lat) < n:
            log(f"alert: only {len(lat)}/{n} arrived")
        # Where the time went for the measured story, from the rows' own timestamps.
        from newsletter.models import Delivery, Edition

        with db.session_scope() as s:
            e = s.scalars(select(Edition).where(Edition.kind == "alert")
                          .order_by(Edition.id.desc())).first()
            planned, first_sent, last_sent = s.execute(
                select(func.max(Delivery.created_at), func.min(Delivery.sent_at),
                       func.max(Delivery.sent_at)).where(Delivery.edition_id == e.id)).one()
        since = datetime.fromtimestamp(t0, UTC)
        timeline = {name: round((at - since).total_seconds(), 3) if at else None
                    for name, at in (("edition_requested", e.requested_at),
                                     ("planning_started", e.started_at),
                                     ("last_delivery_planned", planned),
                                     ("first_sent", first_sent), ("last_sent", last_sent))}
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
        return {"received": len(lat), "p50_s": round(q[49], 3), "p95_s": round(q[94], 3),
                "max_s": round(lat[-1], 3) if lat else None, "timeline_s": timeline}
    finally:
        from newsletter import processes

        processes.stop(worker)
        sink.stop()
        db.dispose_engines()
        drop_database(name)


def subscribe_throughput(total: int, clients: int = 50, paced_rate: float = 300.0,
                         paced_seconds: float = 10.0) -> dict:
    """The real web app under uvicorn; 50 concurrent clients POST /subscribe, twice.

    Saturated: each client sends its next request as soon as the last is answered (a closed
    loop), which gives the most the server answers per second; its latency is then mostly
    queueing, mean = clients / throughput (Little's law), so it says little of a request's
    own cost. Paced: the same 50 clients together offer ``paced_rate`` requests a second,
    each on a fixed schedule, and a request's latency counts from when it was due, not when
    it was sent (a late schedule is not forgiven: no coordinated omission). That is the
    latency a reader sees while the site takes the target rate.
    """
    from newsletter import db
    from newsletter.models import Reader

    name = f"bench_web_{os.getpid()}"
    url = fresh_database(name)
    seed(url, 0, 0)
    # Served the way operators run it: `newsletter web`, one process per core.
    env = configure(url, "smtp://127.0.0.1:9", NEWSLETTER_SUBSCRIBE_RATE_LIMIT="",
                    NEWSLETTER_FORM_MIN_SECONDS="0", NEWSLETTER_WEB_WORKERS=str(os.cpu_count() or 1))
    port = free_port()
    web = subprocess.Popen([str(Path(sys.executable).with_name("newsletter")), "web",
                            "--host", "127.0.0.1", "--port", str(port)],
                           env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=open(VAR / "web.log", "wb"),  # noqa: SIM115
                           start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    host = f"127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                page = urlopen(base + "/subscribe", timeout=1).read().decode()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the web server did not answer; see {VAR / 'web.log'}")
        token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)

        def request(address: str) -> bytes:
            body = urlencode({"form_token": token, "email": address,
                              "topics": ["topic-00", "topic-03"], "frequency": "weekly",
                              "consent": "on"}, doseq=True).encode()
            return (f"POST /subscribe HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        async def run(prefix: str, count: int, interval: float | None) -> dict:
            latencies: list[float] = []
            statuses: dict[int, int] = {}

            async def client(k: int, t0: float) -> None:
                # HTTP/1.1 by hand over one keep-alive connection, as a browser would hold
                # one. httpx spent 4.6 ms of CPU per request on the same 2 cores as the
                # server (a third of what the server spent): the load generator must not be
                # what is measured.
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    for n, i in enumerate(range(k, count, clients)):
                        due = time.perf_counter()
                        if interval is not None:
                            due = t0 + (k / clients + n) * interval
                            await asyncio.sleep(max(0.0, due - time.perf_counter()))
                        writer.write(request(f"{prefix}{i}@example.org"))
                        head = await reader.readuntil(b"\r\n\r\n")
                        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                                     .group(1))
                        await reader.readexactly(length)
                        latencies.append(time.perf_counter() - due)
                        status = int(head[9:12])
                        statuses[status] = statuses.get(status, 0) + 1
                finally:
                    writer.close()

            t0 = time.perf_counter() + 0.05
            await asyncio.gather(*(client(k, t0) for k in range(clients)))
            elapsed = time.perf_counter() - t0
            with db.session_scope() as s:
                stored = s.scalar(select(func.count()).select_from(Reader)
                                  .where(Reader.email.like(f"{prefix}%@example.org")))
            lat = sorted(latencies)
            return {"requests": count, "clients": clients, "per_s": round(count / elapsed, 1),
                    "p50_ms": round(lat[len(lat) // 2] * 1000, 1),
                    "p99_ms": round(lat[min(len(lat) - 1, math.ceil(len(lat) * 0.99) - 1)]
                                    * 1000, 1),
                    "statuses": statuses, "stored": stored}

        saturated = asyncio.run(run("sub", total, None))
        paced_count = int(paced_rate * paced_seconds)
        paced = asyncio.run(run("paced", paced_count, clients / paced_rate))
        paced["offered_per_s"] = paced_rate
        return {**saturated, "paced": paced}
    finally:
        web.terminate()
        try:
            web.wait(10)
        except subprocess.TimeoutExpired:  # open keep-alive connections can hold it up
            os.killpg(web.pid, signal.SIGKILL)  # the worker processes too, not only their parent
            web.wait()
        db.dispose_engines()
        drop_database(name)


# ---------------------------------------------------------------- report

def machine() -> dict:
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {"nproc": os.cpu_count(), "cpu": cpu.group(1).strip() if cpu else platform.machine(),
            "ram_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
            "python": platform.python_version()}


def report(args: argparse.Namespace, r: dict) -> None:
    big, small = r["large"], r.get("small")
    eps = big["emails_per_s"]
    peer_eps, ceil_eps = r.get("peer_emails_per_s"), r.get("ceiling_emails_per_s")
    rss_ratio = (round(big["peak_rss_total_mb"] / small["peak_rss_total_mb"], 2)
                 if small else None)
    alert, sub = r.get("alert") or {}, r.get("subscribe") or {}
    paced = sub.get("paced") or {}
    same = r.get("same_size") or {}
    line = {
        "date": r["date"], "readers": big["readers"], "articles": big["articles"],
        "emails_per_s": eps, "peer_emails_per_s": peer_eps, "ceiling_emails_per_s": ceil_eps,
        "premailer_calls": big["premailer_calls"], "distinct_digests": big["distinct_digests"],
        "ceiling_smtplib_emails_per_s": r.get("ceiling_smtplib_emails_per_s"),
        "rss_ratio_100k_10k": rss_ratio, "alert_p95_s": alert.get("p95_s"),
        # subscribe_p99_ms: at the target's rate, offered by 50 paced clients (the issue's
        # "≥ 300/s, p99 < 100 ms"); the saturated run's p99 is queueing (see subscribe_throughput).
        "subscribe_per_s": sub.get("per_s"), "subscribe_p99_ms": paced.get("p99_ms"),
        "subscribe_saturated_p99_ms": sub.get("p99_ms"),
        "same_size_emails_per_s": same.get("emails_per_s"),
        "same_size_message_bytes": same.get("avg_message_bytes"),
        "peer_sink_ceiling_emails_per_s": same.get("sink_ceiling_emails_per_s"),
        "peer_message_bytes": r.get("peer_message_bytes"),
    }
    with RESULTS_JSONL.open("a") as f:
        f.write(json.dumps(line) + "\n")

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "n/a"

    m = r["machine"]
    md = [
        f"\n## {r['date']} — {'quick' if args.quick else 'full'} run",
        "",
        f"- command: `{r['command']}`",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}",
        f"- sink: {r['sink']}; worker: celery prefork, concurrency {CONCURRENCY}; "
        "PostgreSQL + Redis on the same machine",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| emails/s, {big['readers']} readers, {big['articles']} articles (first plan → last "
        f"delivery recorded) | {eps} ({big['sent']} sent in {big['seconds']} s) | ≥ 1,000 |",
        f"| peer (django-newsletter, N={r.get('peer_n')}, {r.get('peer_message_bytes')} B "
        f"messages, its aiosmtpd sink) emails/s | {peer_eps} | — |",
        f"| same size: ours, {same.get('readers')} readers, {same.get('avg_message_bytes')} B "
        f"messages, the peer's sink (same run) emails/s | {same.get('emails_per_s')} | — |",
        f"| ratio to the peer, same size and sink | {ratio(same.get('emails_per_s'), peer_eps)} "
        f"| ≥ 8 |",
        f"| the peer's sink alone: prebuilt {same.get('sink_ceiling_message_bytes')} B messages, "
        f"{CONCURRENCY} connections, emails/s (bounds any sender through it; ÷ peer) | "
        f"{same.get('sink_ceiling_emails_per_s')} "
        f"({ratio(same.get('sink_ceiling_emails_per_s'), peer_eps)}) | — |",
        f"| (ratio of the large run above, {r.get('message_bytes')} B to smtp-sink, to the "
        f"peer) | {ratio(eps, peer_eps)} | — |",
        f"| raw ceiling (prebuilt {r.get('message_bytes')} B messages, {CONCURRENCY} "
        f"connections, our transport; smtplib.sendmail in brackets) emails/s | {ceil_eps} "
        f"({r.get('ceiling_smtplib_emails_per_s')}) | — |",
        f"| ratio to the ceiling | {ratio(eps, ceil_eps)} | ≥ 0.5 |",
        f"| premailer calls in the edition | {big['premailer_calls']} | ≤ articles + layouts "
        f"= {big['articles']} + layouts |",
        f"| distinct digests (digests rendered) | {big['distinct_digests']} "
        f"({big.get('digest_renders')}) | — |",
        f"| worker peak RSS (main + pool), {small['readers'] if small else '?'} → "
        f"{big['readers']} readers | {small['peak_rss_total_mb'] if small else 'n/a'} MB → "
        f"{big['peak_rss_total_mb']} MB (× {rss_ratio}) | ≤ 1.25× |",
        f"| alert publish → sink, {alert.get('received')} readers, p50 / p95 | "
        f"{alert.get('p50_s')} s / {alert.get('p95_s')} s | p95 ≤ 1 s |",
        f"| POST /subscribe, 50 clients, saturated (closed loop) | {sub.get('per_s')}/s, p50 "
        f"{sub.get('p50_ms')} ms, p99 {sub.get('p99_ms')} ms, stored "
        f"{sub.get('stored')}/{sub.get('requests')} | ≥ 300/s, all stored |",
        f"| POST /subscribe, 50 clients offering {paced.get('offered_per_s')}/s (paced) | "
        f"{paced.get('per_s')}/s answered, p50 {paced.get('p50_ms')} ms, p99 "
        f"{paced.get('p99_ms')} ms, stored {paced.get('stored')}/{paced.get('requests')} | "
        f"p99 < 100 ms, all stored |",
        "",
        "<details><summary>raw figures</summary>",
        "",
        "```json",
        json.dumps(r, indent=1, default=str),
        "```",
        "</details>",
        "",
    ]
    with RESULTS_MD.open("a") as f:
        f.write("\n".join(md))
    print("\n".join(md[:20]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5k vs 10k readers, small phases")
    ap.add_argument("--readers", type=int, help="readers in the large run (default 100000)")
    ap.add_argument("--small", type=int, help="readers in the RSS comparison run")
    ap.add_argument("--articles", type=int, default=300)
    ap.add_argument("--skip", default="", help="comma list: small,peer,ceiling,alert,subscribe")
    ap.add_argument("--profile", action="store_true", help="py-spy the large run's worker")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    large = args.readers or (10_000 if args.quick else 100_000)
    small = args.small or (5_000 if args.quick else 10_000)
    r: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "machine": machine()}
    sink = Sink()
    r["sink"] = sink.kind
    log(f"sink: {sink.kind} on {sink.url}")
    try:
        if "small" not in skip:
            r["small"] = run_edition(small, args.articles, sink, "small")
        r["large"] = run_edition(large, args.articles, sink, "large", profile=args.profile)
        if "ceiling" not in skip:
            msg = sample_message()
            r["message_bytes"] = len(msg)
            n = 2000 if args.quick else 20000
            r["ceiling_emails_per_s"] = round(ceiling(sink, msg, n), 1)
            r["ceiling_smtplib_emails_per_s"] = round(ceiling(sink, msg, n, "smtplib"), 1)
            log(f"ceiling: {r['ceiling_emails_per_s']}/s with {len(msg)} B messages "
                f"(smtplib.sendmail: {r['ceiling_smtplib_emails_per_s']}/s)")
    finally:
        sink.stop()
    if "peer" not in skip:
        # --quick: 600 readers (the peer's rate is steady from a few hundred; 2,000 took
        # half a minute of the two the quick run may last on this machine).
        r["peer_n"] = 600 if args.quick else 2000
        r["peer_emails_per_s"] = peer(r["peer_n"])
        r["peer_message_bytes"] = peer_message_bytes()
        log(f"peer: {r['peer_emails_per_s']}/s, {r['peer_message_bytes']} B messages")
        if (PEER_DIR / "sink.py").exists():
            r["same_size"] = same_size(1_000 if args.quick else 20_000)
            log(f"same size, peer's sink: {r['same_size']['emails_per_s']}/s, "
                f"{r['same_size']['avg_message_bytes']} B messages")
    if "alert" not in skip:
        r["alert"] = alert_latency(1000)
        log(f"alert: {r['alert']}")
    if "subscribe" not in skip:
        r["subscribe"] = subscribe_throughput(600 if args.quick else 3000,
                                              paced_seconds=3 if args.quick else 10)
        log(f"subscribe: {r['subscribe']}")
    report(args, r)


if __name__ == "__main__":
    main()
