"""Migration 0020 backfills the follow log from the readers there are: gained when a reader
confirmed, lost when they left or the topic was retired; the sums are the followers now."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from newsletter import db
from tests.conftest import _fresh_postgres

T = {"created": datetime(2026, 10, 1, tzinfo=UTC), "confirmed": datetime(2026, 10, 2, tzinfo=UTC),
     "left": datetime(2026, 11, 3, tzinfo=UTC), "retired": datetime(2026, 11, 20, tzinfo=UTC)}
TOPICS = [(1, "syria", None), (2, "energy", None), (3, "old", "retired")]
# id, status, confirmed?, unsubscribed?, topics
READERS = [(1, "active", True, False, [1, 2, 3]), (2, "unsubscribed", True, True, [1, 3]),
           (3, "pending", False, False, [1]), (4, "active", False, False, [2]),
           (5, "unsubscribed", False, True, [1])]  # left before ever confirming


def _populate_at_0019(url: str) -> None:
    db.upgrade(url, "0019_edition_note")
    engine = create_engine(url)
    with engine.begin() as c:
        for topic_id, slug, retired in TOPICS:
            c.execute(text("INSERT INTO topics (id, slug, name, description, position, "
                           "created_at, retired_at) VALUES (:i, :s, :s, '', :i, :c, :r)"),
                      {"i": topic_id, "s": slug, "c": T["created"],
                       "r": T["retired"] if retired else None})
        for reader_id, status, confirmed, left, follows in READERS:
            c.execute(text("INSERT INTO readers (id, email, status, frequency, source, "
                           "created_at, confirmed_at, unsubscribed_at) VALUES (:i, :e, :s, "
                           "'weekly', 'form', :c, :k, :u)"),
                      {"i": reader_id, "e": f"r{reader_id}@example.com", "s": status,
                       "c": T["created"], "k": T["confirmed"] if confirmed else None,
                       "u": T["left"] if left else None})
            for topic_id in follows:
                c.execute(text("INSERT INTO reader_topics (reader_id, topic_id) "
                               "VALUES (:r, :t)"), {"r": reader_id, "t": topic_id})
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_log_is_backfilled_from_the_readers(backend, tmp_path) -> None:
    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url, drop = _fresh_postgres()
    try:
        _populate_at_0019(url)
        db.upgrade(url)
        engine = create_engine(url)
        with engine.connect() as c:
            rows = {tuple(r) for r in c.execute(text(
                "SELECT reader_id, topic_id, change, cause FROM topic_follows"))}
            # Each row dated by what it derives from.
            dated = c.execute(text(
                "SELECT count(*) FROM topic_follows f JOIN readers r ON r.id = f.reader_id "
                "JOIN topics t ON t.id = f.topic_id WHERE "
                "(f.change = 1 AND f.at = COALESCE(r.confirmed_at, r.created_at)) OR "
                "(f.change = -1 AND r.status = 'unsubscribed' AND f.at = r.unsubscribed_at) OR "
                "(f.change = -1 AND r.status = 'active' AND f.at = t.retired_at)")).scalar()
            sums = dict(c.execute(text(
                "SELECT topic_id, sum(change) FROM topic_follows GROUP BY topic_id")).all())
        engine.dispose()
        assert rows == {
            (1, 1, 1, "backfill"), (1, 2, 1, "backfill"), (1, 3, 1, "backfill"),
            (1, 3, -1, "backfill"),  # the retired topic, lost when retired
            (2, 1, 1, "backfill"), (2, 3, 1, "backfill"),  # gained when confirmed …
            (2, 1, -1, "backfill"), (2, 3, -1, "backfill"),  # … lost when they left
            (4, 2, 1, "backfill"),  # active with no confirmation date: since created
        }
        assert dated == len(rows)
        # The active followers of each live topic, none for the retired one.
        assert {k: int(v) for k, v in sums.items()} == {1: 1, 2: 2, 3: 0}
    finally:
        if drop:
            drop()
