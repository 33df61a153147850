"""Immediate alerts: stories published close together become one email per reader.

A window slides from its first story instead of sitting on fixed clock buckets: a burst
that starts at 09:04:58 stays one email where five-minute buckets would cut it in two at
09:05, and the first story waits the window, never more. The price is that "which window
is open" is state rather than arithmetic, so the database holds it: the open window is the
one alert edition whose period_key is 'open', and the unique (kind, frequency, period_key)
constraint lets only one exist — two stories published at the same instant join one window
instead of opening two.

The edition's ``cutoff_at`` is the window's end and its due time, fixed when the window opens
(the window length after the story that opened it); ``requested_at`` is its start, the
earliest story in it. Tasks may run out of order, and a story whose publish committed after
its window was planned joins the next window: joining moves the start back, so nothing falls
between two windows.
Closing (open → planning, the period key released, ``edition.requested`` recorded) is one
conditional UPDATE: the doorbell task enqueued for the due time and beat's sweep may both
try, and the edition is planned once.

With a window of 0 each story is its own alert, planned at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.orm import Session

from newsletter import events, sql
from newsletter.config import get_settings
from newsletter.editions.frequencies import LOOKBACK
from newsletter.editions.selection import reads_one_of
from newsletter.errors import AlertError  # noqa: F401 - re-exported
from newsletter.models import (
    Article,
    Edition,
    Reader,
    ReaderTopic,
    Topic,
    TopicTag,
    UTCDateTime,
    utcnow,
)
from newsletter.states import EditionStatus

OPEN_KEY = "open"
# The doorbell may ring this much before the cutoff by the database's clock (two machines
# rarely agree to the millisecond); a story published in that moment opens the next window.
CLOCK_TOLERANCE = timedelta(seconds=1)


def on_published(session: Session, article_id: int, *,
                 window_s: float | None = None) -> Edition | None:
    """Put a newly published story in an alert window, opening one if none is open.

    Returns the window's edition, or None when no active immediate reader follows its
    topics (or it is a backfill, first published long before it reached us).
    """
    article = session.get(Article, article_id)
    if article is None or article.status != "published" or not _worth_alerting(session, article):
        return None
    seconds = get_settings().alert_window_s if window_s is None else window_s
    if seconds <= 0:
        return _single(session, article)
    window = timedelta(seconds=seconds)
    for _ in range(5):
        # A window past its cutoff cannot take this story: close it so a new one can open.
        close_due(session)
        edition = _join(session, article) or _open(session, article, window)
        if edition is not None:
            return edition
    raise AlertError(f"could not open or join an alert window for article {article_id}")


def close_due(session: Session, edition_id: int | None = None) -> list[int]:
    """Close the alert windows past their cutoff (or just ``edition_id``); returns their ids.

    Each closed window is recorded for planning; calling this again closes nothing twice.
    """
    due = [Edition.cutoff_at <= utcnow() + CLOCK_TOLERANCE]
    if edition_id is not None:
        due.append(Edition.id == edition_id)
    return _close(session, *due)


def _close(session: Session, *where: Any) -> list[int]:
    closed = list(session.scalars(
        update(Edition)
        .where(Edition.kind == "alert", Edition.status == EditionStatus.OPEN, *where)
        .values(status=EditionStatus.PLANNING, period_key=None)
        .returning(Edition.id)
        .execution_options(synchronize_session=False)
    ))
    for closed_id in closed:
        events.record(session, events.EDITION_REQUESTED, edition_id=closed_id)
    return closed


def open_window(session: Session) -> Edition | None:
    """The alert window collecting stories now, if any."""
    return session.scalar(select(Edition).where(
        Edition.kind == "alert", Edition.frequency == "immediate", Edition.period_key == OPEN_KEY))


def _worth_alerting(session: Session, article: Article) -> bool:
    # Not news: a story that reached us long ago (republished after a withdrawal, or an
    # event the relay sends after a long outage), or a backfill dated long before it reached
    # us. This also bounds how far back a late story can move a window's start.
    if article.created_at < utcnow() - LOOKBACK["immediate"]:
        return False
    if article.published_at <= article.created_at - LOOKBACK["immediate"]:
        return False
    tag_ids = [link.tag_id for link in article.tag_links]
    # Readers follow live topics covering one of the story's tags, and read its language.
    return bool(tag_ids) and session.scalar(
        select(ReaderTopic.reader_id)
        .join(Reader, Reader.id == ReaderTopic.reader_id)
        .join(TopicTag, TopicTag.topic_id == ReaderTopic.topic_id)
        .join(Topic, Topic.id == TopicTag.topic_id)
        .where(TopicTag.tag_id.in_(tag_ids), Topic.retired_at.is_(None),
               Reader.status == "active", Reader.frequency == "immediate",
               reads_one_of([article.lang]))
        .limit(1)
    ) is not None


def _join(session: Session, article: Article) -> Edition | None:
    edition = open_window(session)
    if edition is None:
        return None
    if article.created_at > edition.cutoff_at:
        # Over by the clock that stamped the story, not yet by ours (two machines' clocks
        # differ): it cannot take the story, so it closes now and the caller opens the next.
        _close(session, Edition.id == edition.id)
        return None
    start = bindparam("start", article.created_at, type_=UTCDateTime())
    # Conditional on 'open' (and a row lock on PostgreSQL): if the window closes meanwhile,
    # nothing changes here and the caller opens a new one rather than joining a planned one.
    joined = session.execute(
        update(Edition)
        .where(Edition.id == edition.id, Edition.status == EditionStatus.OPEN)
        .values(requested_at=case((Edition.requested_at > start, start),
                                  else_=Edition.requested_at))
        .execution_options(synchronize_session=False)
    ).rowcount
    session.expire(edition)
    return edition if joined else None


def _open(session: Session, article: Article, window: timedelta) -> Edition | None:
    edition = _insert_edition(session, period_key=OPEN_KEY, status=EditionStatus.OPEN,
                              requested_at=article.created_at,
                              cutoff_at=article.created_at + window)
    if edition is None:
        return None  # another worker opened one first: the caller joins it
    # The doorbell for the due time; if it is lost, beat's sweep closes the window anyway.
    events.record(session, events.ALERT_WINDOW_OPENED, edition_id=edition.id,
                  due_at=edition.cutoff_at.isoformat())
    return edition


def _single(session: Session, article: Article) -> Edition:
    # Keyed by the story, so a redelivered task finds its alert instead of making another.
    key = f"article-{article.id}"
    query = select(Edition).where(Edition.kind == "alert", Edition.frequency == "immediate",
                                  Edition.period_key == key)
    existing = session.scalar(query)
    if existing is not None:
        return existing
    edition = _insert_edition(session, period_key=key, status=EditionStatus.PLANNING,
                              requested_at=article.created_at, cutoff_at=article.created_at)
    if edition is None:
        return session.scalars(query).one()
    events.record(session, events.EDITION_REQUESTED, edition_id=edition.id)
    return edition


def _insert_edition(session: Session, **values: Any) -> Edition | None:
    """A new alert edition, or None if its period key is taken (another worker won the race).

    ON CONFLICT DO NOTHING rather than a savepoint: pysqlite's SAVEPOINT, when it is the
    first write of a transaction, commits on release, and a race must not end a transaction.
    """
    new_id = sql.insert_unless_present(
        session, Edition.__table__,
        {"kind": "alert", "frequency": "immediate", "source": "alert", **values}, None,
        Edition.id)
    return None if new_id is None else session.get(Edition, new_id)
