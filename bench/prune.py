"""Table sizes before and after a prune, on PostgreSQL.

``.venv/bin/python bench/prune.py --readers 2000`` seeds a fresh database (COPY, as the
delivery benchmark does), plans one weekly edition in this process, marks its deliveries
sent and the edition finished, then prunes it as if 91 days had passed (RETENTION's 90d),
printing each table's bytes (table, indexes) before and after as JSON.

``--url URL`` instead measures and prunes a database a full run left behind (the lead's
1,000,000-reader run): its finished editions are pruned as if ``--days-later`` had passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

TABLES = ("deliveries", "received_digests", "edition_digests", "editions", "outbox_events",
          "webhook_deliveries", "bounce_events")


def sizes(session) -> dict[str, dict[str, int]]:
    from newsletter import sql
    from newsletter.models import Base

    session.commit()
    return sql.table_bytes(session, *(Base.metadata.tables[t] for t in TABLES))


def vacuum(url: str) -> dict[str, int]:
    """Each table's bytes (table + indexes) once compacted: a prune frees pages for reuse
    (plain VACUUM, which autovacuum does), the files shrink only under VACUUM FULL."""
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql("VACUUM (ANALYZE) " + ", ".join(TABLES))
        full = {}
        for t in TABLES:
            c.exec_driver_sql(f"VACUUM FULL {t}")
            full[t] = c.exec_driver_sql(
                "SELECT pg_table_size(%s::regclass) + pg_indexes_size(%s::regclass)",
                (t, t)).scalar()
    engine.dispose()
    return full


def seeded(readers: int) -> str:
    from bench.seeding import fresh_database, seed

    url = fresh_database("bench_prune")
    seed(url, readers, 300)
    return url


def send_on_paper(url: str) -> None:
    """One weekly edition planned for real, its deliveries then recorded as sent (no SMTP:
    the sizes, not the sending, are measured here)."""
    from sqlalchemy import update

    from newsletter import db
    from newsletter.editions import planning
    from newsletter.models import Delivery, Edition, utcnow

    with db.session_scope() as session:
        edition = Edition(frequency="weekly", source="bench", status="planning")
        session.add(edition)
        session.commit()
        planning.plan(session, edition.id)
        now = utcnow()
        session.execute(update(Delivery).values(status="sent", claimed_at=now, sent_at=now))
        session.execute(update(Edition).values(status="done", finished_at=now))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--url", help="prune this database (a finished run's) instead")
    parser.add_argument("--days-later", type=int, default=91)
    args = parser.parse_args()
    url = args.url or seeded(args.readers)
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    from newsletter import db
    from newsletter.config import get_settings

    get_settings.cache_clear()  # seeding read the settings before the URL was known
    from newsletter.editions import retention
    from newsletter.models import utcnow

    if not args.url:
        send_on_paper(url)
    with db.session_scope() as session:
        before = sizes(session)
        started = time.monotonic()
        gone = retention.prune(session, timedelta(days=90),
                               now=utcnow() + timedelta(days=args.days_later))
        seconds = time.monotonic() - started
        after = sizes(session)
    compacted = vacuum(url)
    print(json.dumps({"url": url.split("@")[-1], "pruned": gone.as_dict(),
                      "seconds": round(seconds, 2), "before": before, "after": after,
                      "after_vacuum_full": compacted}, indent=1))


if __name__ == "__main__":
    main()
