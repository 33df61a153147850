"""The alert phase: 1,000 immediate readers, window 0; publish a story and time each
message from the publish to its arrival at the sink."""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime

from sqlalchemy import create_engine, func, select, text

from bench import processes
from bench.config import VAR, log
from bench.seeding import drop_database, fresh_database, seed
from bench.sinks import Sink, TimestampSink, smtp_sink_binary


def alert_latency(n: int = 1000) -> dict:
    """1,000 immediate readers, window 0: publish a story, time each message's arrival."""
    from newsletter import db
    from newsletter import processes as newsletter_processes

    name = f"bench_alert_{os.getpid()}"
    url = fresh_database(name)
    seed(url, n, 0, frequency="immediate", reader_tags=(1, 1), seed_value=3)
    with create_engine(url).begin() as c:  # every reader follows topic 1
        c.execute(text("UPDATE reader_topics SET topic_id = 1"))
    # smtp-sink when installed (aiosmtpd in Python tops out near 1,000 small messages a
    # second on this machine, which would be measuring the sink).
    sink = Sink(VAR / "alert-sink") if smtp_sink_binary() else TimestampSink()
    env = processes.configure(url, sink.url, NEWSLETTER_ALERT_WINDOW_S="0")
    worker = processes.start_worker(env, "alert")
    try:
        # A warm-up story so the first measured one does not pay imports and connections.
        runs = [_publish_and_wait(sink, n, k) for k in range(2)]
        lat = runs[-1][1]
        if len(lat) < n:
            log(f"alert: only {len(lat)}/{n} arrived")
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
        return {"received": len(lat), "p50_s": round(q[49], 3), "p95_s": round(q[94], 3),
                "max_s": round(lat[-1], 3) if lat else None,
                "timeline_s": _timeline(runs[-1][0])}
    finally:
        newsletter_processes.stop(worker)
        sink.stop()
        db.dispose_engines()
        drop_database(name)


def _publish_and_wait(sink, n: int, k: int) -> tuple[float, list[float]]:
    """Publish story ``k``; (when, sorted seconds from then to each arrival)."""
    from newsletter import db
    from newsletter.newsroom import articles

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
    lat = sorted(a - t0 for a in sink.times())
    time.sleep(1)
    return t0, lat


def _timeline(t0: float) -> dict[str, float | None]:
    """Where the time went for the measured story, from the rows' own timestamps."""
    from newsletter import db
    from newsletter.models import Delivery, Edition

    with db.session_scope() as s:
        e = s.scalars(select(Edition).where(Edition.kind == "alert")
                      .order_by(Edition.id.desc())).first()
        planned, first_sent, last_sent = s.execute(
            select(func.max(Delivery.created_at), func.min(Delivery.sent_at),
                   func.max(Delivery.sent_at)).where(Delivery.edition_id == e.id)).one()
        since = datetime.fromtimestamp(t0, UTC)
        return {name: round((at - since).total_seconds(), 3) if at else None
                for name, at in (("edition_requested", e.requested_at),
                                 ("planning_started", e.started_at),
                                 ("last_delivery_planned", planned),
                                 ("first_sent", first_sent), ("last_sent", last_sent))}
