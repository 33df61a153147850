"""Console page timings: each edition page of the console, signed in, against PostgreSQL
holding an edition of 100,000 deliveries and a site of 10,000 articles.

    BENCH_REDIS=redis://127.0.0.1:6379/5 .venv/bin/python bench/console_editions.py [--readers N]

Seeds with COPY (bench/run.py's seed: tags, the week's 300 articles, active readers; then
9,700 older articles, a consent ledger over 60 days), plans a real weekly edition in-process
with the planner (no worker, nothing sent: its deliveries are then marked sent, failed,
suppressed as an edition ends), adds bounces and 60 older editions, and times each page
through the app in-process (TestClient: no network, no server) — the median and the 95th
percentile of ``--runs`` requests after two warm-up requests, and the first request alone
(before the process kept a finished edition's figures or the dashboard's reader figures).
Target: every page < 200 ms.
Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.config import TAGS, log  # noqa: E402
from bench.processes import configure  # noqa: E402
from bench.seeding import drop_database, fresh_database, seed  # noqa: E402

DATABASE = "console_pages_bench"
OLD_ARTICLES = 9_700
TARGET_MS = 200


def seed_history(url: str, readers: int) -> None:
    """Older articles (8 to 200 days old, so they are not in the week's edition), and the
    consent ledger: every reader confirmed within 60 days, 2 % withdrawn since."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    eng = create_engine(url)
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        start = 1 + int(cur.execute("SELECT max(id) FROM articles").fetchone()[0])
        with cur.copy("COPY articles (id, url, title, summary, author, status, published_at,"
                      " created_at, updated_at) FROM STDIN") as cp:
            for a in range(start, start + OLD_ARTICLES):
                at = now - timedelta(days=8 + rng.random() * 192)
                cp.write_row((a, f"https://news.example.com/archive/{a}", f"Older story {a}",
                              "An older summary.", "Staff reporter", "published", at, at, at))
        with cur.copy("COPY article_tags (article_id, tag_id, position) FROM STDIN") as cp:
            for a in range(start, start + OLD_ARTICLES):
                cp.write_row((a, rng.randrange(TAGS) + 1, 0))
        with cur.copy("COPY consent_events (email_hash, action, source, method, details,"
                      " created_at) FROM STDIN") as cp:
            for r in range(readers):
                at = now - timedelta(days=rng.random() * 60)
                cp.write_row((f"{r:064x}", "confirmed", "import", None, "{}", at))
                if rng.random() < 0.02:
                    cp.write_row((f"{r:064x}", "withdrawn", "email", "one-click", "{}",
                                  at + (now - at) * rng.random()))
        cur.execute("SELECT setval(pg_get_serial_sequence('articles', 'id'),"
                    " (SELECT max(id) FROM articles))")
        cur.execute("ANALYZE articles, article_tags, consent_events")
        raw.commit()
    finally:
        raw.close()
        eng.dispose()


def plan_edition() -> int:
    """A real weekly edition planned by the planner, then settled as a sent one would be."""
    from newsletter import db
    from newsletter.editions import planning
    from newsletter.editions import requests as editions

    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="bench",
                                      note="Bench: an editor's note.").id
    t0 = time.perf_counter()
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    log(f"planned edition {edition_id} in {time.perf_counter() - t0:.1f} s")
    with db.session_scope() as session:  # the plan's own end-of-plan count, for scale
        t0 = time.perf_counter()
        planning._articles_carried(session, edition_id)
        log(f"  of which the end-of-plan count of articles: "
            f"{time.perf_counter() - t0:.2f} s")
    with db.session_scope() as session:
        session.execute(text(
            "UPDATE deliveries SET status = CASE WHEN id % 100 = 0 THEN 'failed'"
            " WHEN id % 50 = 1 THEN 'suppressed' ELSE 'sent' END,"
            " failure = CASE WHEN id % 100 = 0 THEN (CASE WHEN id % 200 = 0 THEN 'temporary'"
            " ELSE 'permanent' END) END,"
            " last_error = CASE WHEN id % 100 = 0 THEN '550 5.1.1 <reader' || id ||"
            " '@example.org>: user unknown' END WHERE edition_id = :e"), {"e": edition_id})
        session.execute(text(
            "INSERT INTO bounce_events (reader_id, kind, source, delivery_id, dedupe_key,"
            " received_at, diagnostic) SELECT reader_id, 'hard', 'mailbox', id, 'b' || id,"
            " now(), '' FROM deliveries WHERE edition_id = :e AND id % 200 = 3"),
            {"e": edition_id})
        session.execute(text(
            "UPDATE editions SET status = 'done', finished_at = now() WHERE id = :e"),
            {"e": edition_id})
        session.execute(text(
            "INSERT INTO editions (kind, frequency, source, status, dry_run, cutoff_at,"
            " requested_at, finished_at, distinct_digests) SELECT 'digest', 'daily', 'schedule',"
            " 'done', false, now() - make_interval(days => g), now() - make_interval(days => g),"
            " now() - make_interval(days => g), 0 FROM generate_series(1, 60) AS g"))
        session.execute(text("ANALYZE deliveries, edition_digests, editions, bounce_events"))
        # A reader who joined after it: the next digest the preview shows is theirs.
        session.execute(text(
            "INSERT INTO readers (email, status, frequency, source, created_at) VALUES"
            " ('newcomer@example.org', 'active', 'weekly', 'form', now())"))
        session.execute(text(
            "INSERT INTO reader_topics (reader_id, tag_id) SELECT id, t FROM readers,"
            " (VALUES (1), (2), (6)) AS tags(t) WHERE email = 'newcomer@example.org'"))
    return edition_id


def signed_in_client():
    from fastapi.testclient import TestClient

    from newsletter import db
    from newsletter.accounts import editors
    from newsletter.web.app import create_app

    password = "a long bench password 42"
    with db.session_scope() as session:
        editors.add(session, "bench@news.example", "editor", password)
    client = TestClient(create_app(), base_url="https://testserver", follow_redirects=False)
    page = client.get("/admin/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post("/admin/login", data={"email": "bench@news.example", "password": password,
                                          "csrf_token": token, "next": "/admin"})
    assert r.status_code == 303, r.text
    return client


def time_pages(client, edition_id: int, dry_run_id: int, runs: int) -> list[dict]:
    htmx = {"HX-Request": "true"}
    pages = [
        ("dashboard", "/admin", {}),
        ("dashboard progress (htmx)", "/admin/progress", {}),
        ("editions, page 1", "/admin/editions", {}),
        ("editions, page 3", "/admin/editions?page=3", {}),
        ("edition (100k deliveries)", f"/admin/editions/{edition_id}", {}),
        ("edition progress (htmx)", f"/admin/editions/{edition_id}/progress", htmx),
        ("edition per topic + sample (htmx)", f"/admin/editions/{edition_id}/contents", htmx),
        ("new edition", "/admin/editions/new", {}),
        ("new edition with its dry run", f"/admin/editions/new?dry_run={dry_run_id}", {}),
        ("preview, 3 topics", "/admin/preview?tag=topic-00&tag=topic-01&tag=topic-05", {}),
        ("preview frame", "/admin/preview/frame?tag=topic-00&tag=topic-01&tag=topic-05", {}),
        ("preview, a reader", "/admin/preview?email=newcomer@example.org", {}),
    ]
    out = []
    for name, path, headers in pages:
        times = []
        for k in range(runs + 2):
            t0 = time.perf_counter()
            r = client.get(path, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            if k >= 2:
                times.append(elapsed)
            if k == 0:
                cold = elapsed  # before this process kept anything (see the README)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        out.append({"page": name, "path": path, "median_ms": round(statistics.median(times), 1),
                    "p95_ms": round(p95, 1), "first_ms": round(cold, 1)})
        log(f"{name:36s} median {out[-1]['median_ms']:6.1f} ms  p95 {out[-1]['p95_ms']:6.1f} ms"
            f"  first {out[-1]['first_ms']:6.1f} ms")
    return out


def dry_run() -> int:
    from newsletter import db
    from newsletter.editions import planning
    from newsletter.editions import requests as editions

    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="bench", dry_run=True).id
    with db.session_scope() as session:
        planning.plan(session, edition_id)
    return edition_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    url = fresh_database(DATABASE)
    try:
        t0 = time.perf_counter()
        seed(url, args.readers, 300)
        seed_history(url, args.readers)
        log(f"seeded {args.readers:,} readers and {300 + OLD_ARTICLES:,} articles "
            f"in {time.perf_counter() - t0:.1f} s")
        configure(url, "smtp://127.0.0.1:9")  # nothing is sent: no worker runs
        edition_id = plan_edition()
        dry_run_id = dry_run()
        results = time_pages(signed_in_client(), edition_id, dry_run_id, args.runs)
        worst = max(r["p95_ms"] for r in results)
        log("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
            + f" on {os.cpu_count()} cores")
        log(f"slowest p95 {worst:.1f} ms: {'within' if worst < TARGET_MS else 'OVER'} "
            f"the {TARGET_MS} ms target")
    finally:
        if not args.keep:
            from newsletter import db

            db.dispose_engines()
            drop_database(DATABASE)


if __name__ == "__main__":
    main()
