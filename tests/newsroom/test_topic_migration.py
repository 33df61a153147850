"""Migration 0017 turns today's tags into topics: nothing a reader follows changes."""

from __future__ import annotations

import json

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from newsletter import db
from tests.conftest import _fresh_postgres

TAGS = [(1, "syria", "Syria"), (2, "energy", "Energy"), (3, "gulf-states", "Gulf States")]
FOLLOWS = [(1, 1), (1, 2), (2, 3), (3, 1), (3, 2), (3, 3)]


def _populate_at_0015(url: str) -> None:
    db.upgrade(url, "0015_claim_holders")
    engine = create_engine(url)
    with engine.begin() as c:
        for tag_id, slug, name in TAGS:
            c.execute(text("INSERT INTO tags (id, slug, name) VALUES (:i, :s, :n)"),
                      {"i": tag_id, "s": slug, "n": name})
        for reader_id in (1, 2, 3):
            c.execute(text("INSERT INTO readers (id, email, status, frequency, source, "
                           "created_at) VALUES (:i, :e, 'active', 'weekly', 'form', "
                           "CURRENT_TIMESTAMP)"), {"i": reader_id, "e": f"r{reader_id}@example.com"})
        for reader_id, tag_id in FOLLOWS:
            c.execute(text("INSERT INTO reader_topics (reader_id, tag_id) VALUES (:r, :t)"),
                      {"r": reader_id, "t": tag_id})
        # A known address's new choice waits beside it, by slug.
        c.execute(text("INSERT INTO pending_choices (reader_id, topics, frequency, created_at) "
                       "VALUES (2, :t, 'daily', CURRENT_TIMESTAMP)"),
                  {"t": json.dumps(["energy", "gulf-states"])})
    engine.dispose()


def _follows(url: str) -> set[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as c:
        rows = c.execute(text(
            "SELECT r.email, t.slug FROM reader_topics x JOIN readers r ON r.id = x.reader_id "
            "JOIN topics t ON t.id = x.topic_id")).all()
    engine.dispose()
    return {tuple(r) for r in rows}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_tags_become_topics_and_readers_keep_what_they_follow(backend, tmp_path) -> None:
    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url, drop = _fresh_postgres()
    try:
        _populate_at_0015(url)
        db.upgrade(url)
        slugs = {t[0]: t[1] for t in TAGS}
        emails = {1: "r1@example.com", 2: "r2@example.com", 3: "r3@example.com"}
        assert _follows(url) == {(emails[r], slugs[t]) for r, t in FOLLOWS}
        engine = create_engine(url)
        with engine.begin() as c:
            topics = c.execute(text("SELECT id, slug, name, retired_at FROM topics "
                                    "ORDER BY position")).all()
            covers = set(c.execute(text("SELECT topic_id, tag_id FROM topic_tags")).all())
            # The form's order (by name) is kept as positions.
            assert [t.slug for t in topics] == ["energy", "gulf-states", "syria"]
            assert all(t.retired_at is None for t in topics)
            assert covers == {(1, 1), (2, 2), (3, 3)}
            # A topic made after the migration gets a fresh id (PostgreSQL's sequence moved).
            c.execute(text("INSERT INTO topics (slug, name, description, position, created_at)"
                           " VALUES ('iraq', 'Iraq', '', 9, CURRENT_TIMESTAMP)"))
            assert c.scalar(text("SELECT id FROM topics WHERE slug = 'iraq'")) == 4
        engine.dispose()
        # The pending choice's slugs name topics now.
        from sqlalchemy.orm import Session

        from newsletter.models import Reader
        from newsletter.readers import subscriptions

        engine = create_engine(url)
        with Session(engine) as session:
            chosen, frequency = subscriptions.pending_choice(session, session.get(Reader, 2))
            assert [t.slug for t in chosen] == ["energy", "gulf-states"] and frequency == "daily"
        engine.dispose()
        # And back: every reader follows the tags their topics covered.
        command.downgrade(db.alembic_config(url), "0015_claim_holders")
        engine = create_engine(url)
        with engine.connect() as c:
            back = set(c.execute(text("SELECT reader_id, tag_id FROM reader_topics")).all())
        engine.dispose()
        assert back == set(FOLLOWS)
    finally:
        if drop:
            drop()
