"""Times the console's newsroom and readers pages on PostgreSQL at a large site's size.

Seeds 100,000 readers (with a consent entry each and a delivery each of one edition) and
10,000 articles (a revision on every tenth) with COPY, as bench/run.py seeds, plus bounce
reports and suppressions; then signs an admin in and asks each page several times through
the app (FastAPI's TestClient: the whole request, template included, no network), and
prints the median and the slowest time of each. Target: every page under 200 ms.

    .venv/bin/python -m bench.console_desk [--readers 100000] [--articles 10000] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from bench.seeding import drop_database, fresh_database, seed
from newsletter import db
from newsletter.config import reload_settings

TARGET_MS = 200


def seed_console(url: str, readers: int, articles: int) -> None:
    """What the console's pages read beyond bench/run.py's seed: ledger, deliveries,
    revisions, bounce reports and suppressions."""
    now = datetime.now(UTC)
    eng = create_engine(url)
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY consent_events (reader_id, email_hash, action, source, method, "
                      "details, created_at) FROM STDIN") as cp:
            for r in range(1, readers + 1):
                cp.write_row((r, f"{r:064x}", "confirmed", "import", "import",
                              '{"consented_at": "2025-01-01T00:00:00+00:00"}',
                              now - timedelta(days=30)))
        cur.execute("INSERT INTO editions (id, kind, frequency, dry_run, source, status, "
                    "cutoff_at, requested_at, distinct_digests) VALUES (1, 'digest', 'weekly', "
                    "false, 'api', 'done', now(), now(), 1)")
        with cur.copy("COPY deliveries (edition_id, reader_id, status, message_id, "
                      "content_key, attempts, reclaims, created_at, sent_at) FROM STDIN") as cp:
            for r in range(1, readers + 1):
                status = "failed" if r % 500 == 0 else "sent"
                cp.write_row((1, r, status, f"<{r}.bench@news.example>", "k", 1, 0, now, now))
        with cur.copy("COPY article_revisions (article_id, changed_at, changes, substantial) "
                      "FROM STDIN") as cp:
            for a in range(1, articles + 1, 10):
                cp.write_row((a, now, json.dumps({"title": ["Old", "New"]}), a % 20 == 1))
        with cur.copy("COPY bounce_events (reader_id, email_hash, kind, status, diagnostic, "
                      "source, dedupe_key, received_at) FROM STDIN") as cp:
            for b in range(1, 2001):
                cp.write_row((b, f"{b:064x}", ("hard", "soft", "complaint")[b % 3], "5.1.1",
                              "550 user unknown", "mailbox", f"bench-{b}", now))
        with cur.copy("COPY suppressions (email_hash, hash_scheme, reason, created_at) "
                      "FROM STDIN") as cp:
            for s in range(1, 5001):
                cp.write_row((f"{s:063x}s", "hmac-sha256", ("bounce", "complaint", "erased")[s % 3],
                              now))
        raw.commit()
    finally:
        raw.close()
        eng.dispose()
    # As a site that has run a while: statistics and visibility maps up to date, so no
    # autovacuum of the freshly loaded tables lands in the middle of the timings.
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("VACUUM (ANALYZE)"))


PAGES = [
    "/admin/articles", "/admin/articles?page=399", "/admin/articles?q=story+99",
    "/admin/articles?tag=topic-03", "/admin/articles?status=unpublished",
    "/admin/articles/5001", "/admin/readers", "/admin/readers?page=3999",
    "/admin/readers?address=reader9999", "/admin/readers?address=reader1&status=active",
    "/admin/readers/50000", "/admin/readers/50000/deliveries", "/admin/readers/import",
    "/admin/feeds", "/admin/deliverability", "/admin/deliverability?page=80",
    "/admin/deliverability/suppressions",
    "/admin/deliverability/suppressions?address=reader7%40example.org",
]


def time_pages(runs: int) -> dict[str, tuple[float, float]]:
    from tests.conftest import add_editor, console_client, sign_in

    add_editor("bench@news.example", "admin")
    client = console_client()
    assert sign_in(client, "bench@news.example").status_code == 303
    for path in PAGES:  # every page once first: templates compiled, statements cached
        assert client.get(path).status_code == 200, path
    timings = {}
    for path in PAGES:
        seen = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(path)
            seen.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        timings[path] = (statistics.median(seen), max(seen))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    name = "bench_console"
    url = fresh_database(name)
    try:
        seed(url, args.readers, args.articles)
        seed_console(url, args.readers, args.articles)
        os.environ.update(NEWSLETTER_DATABASE_URL=url, NEWSLETTER_LOG_LEVEL="WARNING",
                          NEWSLETTER_BASE_URL="https://news.example",
                          NEWSLETTER_SECRET_KEY="bench-secret-key-0123456789abcdef0123",
                          NEWSLETTER_HASH_KEY="bench-hash-key-0123456789abcdef01234567")
        reload_settings()
        db.dispose_engines()
        timings = time_pages(args.runs)
        with create_engine(url).connect() as conn:
            plan = conn.execute(text("EXPLAIN SELECT id FROM readers WHERE email LIKE "
                                     "'reader9999%' ORDER BY email LIMIT 25")).scalars().all()
        load = os.getloadavg()[0]
        print(f"{args.readers} readers, {args.articles} articles; ms over {args.runs} runs; "
              f"load average {load:.1f} on {os.cpu_count()} cores")
        print(f"{'page':58} {'median':>7} {'max':>7}")
        for path, (median, slowest) in timings.items():
            flag = "" if slowest < TARGET_MS else "  over target"
            print(f"{path:58} {median:7.1f} {slowest:7.1f}{flag}")
        print("prefix search plan:", " / ".join(line.strip() for line in plan))
    finally:
        db.dispose_engines()
        if not args.keep:
            drop_database(name)


if __name__ == "__main__":
    main()
