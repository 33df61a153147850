"""Who follows which topic, as it changes: the append-only log behind topic growth.

A follow is an **active** reader following a **live** topic: what an edition reaches. A
pending sign-up is not one yet (most forms see sign-ups that never confirm) and a retired
topic has none. So a reader's follows change when their topics change (confirm with a new
choice, preferences, an import) and when their status does (confirm, resubscribe,
unsubscribe, a bounce or complaint, erasure), and a topic's when it is retired or restored.

Each of those writers goes through ``tracked`` (or ``topic_retired`` / ``topic_restored``)
in its own transaction: the reader's follows are read before and after the change and the
difference is logged, so the log cannot drift from reader_topics whatever the writer did.
The sum of a topic's changes is its active followers now. The floor, not a room: readers
and newsroom both write it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import insert, literal, select, update
from sqlalchemy.orm import Session

from newsletter import sql
from newsletter.models import Reader, ReaderTopic, Topic, TopicFollow, utcnow

Follow = tuple[int, int]  # (reader id, topic id)
ACTIVE = "active"


def following(session: Session, reader_ids: Iterable[int]) -> set[Follow]:
    """The follows of these readers now: (reader, topic) for an active reader and a live topic."""
    ids = list(reader_ids)
    if not ids:
        return set()
    session.flush()  # an ORM change to reader.topics or reader.status must be seen
    rows = session.execute(
        select(ReaderTopic.reader_id, ReaderTopic.topic_id)
        .join(Reader, Reader.id == ReaderTopic.reader_id)
        .join(Topic, Topic.id == ReaderTopic.topic_id)
        .where(sql.one_of(session, ReaderTopic.reader_id, ids), Reader.status == ACTIVE,
               Topic.retired_at.is_(None)))
    return {(reader_id, topic_id) for reader_id, topic_id in rows}


def record(session: Session, before: set[Follow], after: set[Follow], cause: str) -> int:
    """Log what ``after`` gained and lost on ``before``; returns how many rows it wrote."""
    now = utcnow()
    rows = [{"reader_id": r, "topic_id": t, "change": 1, "cause": cause, "at": now}
            for r, t in sorted(after - before)]
    rows += [{"reader_id": r, "topic_id": t, "change": -1, "cause": cause, "at": now}
             for r, t in sorted(before - after)]
    if rows:
        session.execute(insert(TopicFollow), rows)
    return len(rows)


@contextmanager
def tracked(session: Session, reader_ids: Iterable[int], cause: str) -> Iterator[None]:
    """Log how the block changed these readers' follows (in the block's transaction)."""
    ids = list(reader_ids)
    before = following(session, ids)
    yield
    record(session, before, following(session, ids), cause)


def forget(session: Session, reader_id: int) -> None:
    """Unlink the reader's log rows before erasure: the counts stay, nothing names them."""
    session.execute(update(TopicFollow).where(TopicFollow.reader_id == reader_id)
                    .values(reader_id=None))


def topic_retired(session: Session, topic_id: int) -> None:
    """Every active follower of the topic loses it (call while it is still live)."""
    _all_followers(session, topic_id, -1, "retire")


def topic_restored(session: Session, topic_id: int) -> None:
    """Every active reader who kept the retired topic follows it again."""
    _all_followers(session, topic_id, 1, "restore")


def _all_followers(session: Session, topic_id: int, change: int, cause: str) -> None:
    # One INSERT … SELECT: a topic may have 100,000 followers.
    followers = (
        select(ReaderTopic.reader_id, ReaderTopic.topic_id, literal(change), literal(cause),
               literal(utcnow(), TopicFollow.__table__.c.at.type))
        .join(Reader, Reader.id == ReaderTopic.reader_id)
        .where(ReaderTopic.topic_id == topic_id, Reader.status == ACTIVE))
    session.execute(insert(TopicFollow).from_select(
        ["reader_id", "topic_id", "change", "cause", "at"], followers))
