"""The database's two dialects, one function per operation.

Every statement that PostgreSQL and SQLite need written differently lives here, so the
rooms never ask which database they run on: an id list as one array parameter, an insert
that skips or updates what exists, a lock across processes, and the planner's bulk writes.
The same tests run each of them on both (the ``backend`` fixture in tests/conftest.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, Table, any_, bindparam, func, insert, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from newsletter.config import get_settings
from newsletter.models import Delivery, EditionDigest, StoryClicks
from newsletter.states import DeliveryStatus


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# --- conditions --------------------------------------------------------------------------


def one_of(session: Session, column: ColumnElement, values: Iterable[object]) -> ColumnElement:
    """``column IN values``; on PostgreSQL ``column = ANY(:values)``, one array parameter.

    psycopg parses a statement's placeholders in Python and caches the result only up to 50
    parameters: a batch's ``IN`` of 200 ids was parsed afresh each time, ~5 ms a statement.
    """
    values = list(values)
    if _postgresql(session):
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def one_of_named(session: Session, column: ColumnElement, name: str) -> ColumnElement:
    """:func:`one_of` with the values left to a parameter ``name``, for a statement built
    once and run many times (the same object each call, so a cache can key on it)."""
    return _one_of_named(session.get_bind().dialect.name, column, name)


@cache
def _one_of_named(dialect: str, column: ColumnElement, name: str) -> ColumnElement:
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def pairs_among(session: Session, first: ColumnElement, second: ColumnElement,
                pairs: Iterable[tuple[object, object]]) -> ColumnElement:
    """Rows whose (first, second) may be among ``pairs``: exactly on SQLite (a row-value
    IN), a superset on PostgreSQL (each column ``= ANY``, see one_of), which the caller
    filters. Our pairs are (edition, content key) with one edition or two, so it is exact
    in practice."""
    pairs = set(pairs)
    if _postgresql(session):
        return one_of(session, first, {a for a, _ in pairs}) & \
            one_of(session, second, {b for _, b in pairs})
    return tuple_(first, second).in_(pairs)


# --- inserts that meet an existing row ---------------------------------------------------


def upsert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT of ``table``, which has ``on_conflict_do_*`` (both alike); the
    same object each call, so a statement built from it can be cached on it."""
    return _upsert(session.get_bind().dialect.name, table)


@cache
def _upsert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def insert_ignoring_duplicates(session: Session, table: Table) -> Insert:
    """INSERT that skips rows whose primary key exists (another planner wrote them first)."""
    return _ignoring_duplicates(upsert(session, table))


@cache
def _ignoring_duplicates(statement: Insert) -> Insert:
    # Built once per dialect and table and run with parameters: a statement is immutable,
    # and building it costs more than running it on the subscribe path.
    return statement.on_conflict_do_nothing()


def insert_unless_present(session: Session, table: Table, values: dict[str, Any],
                          index_elements: list[str] | None, returning: ColumnElement) -> Any:
    """Insert one row unless a unique key (``index_elements``, or any) says it exists; the
    ``returning`` column of the new row, or None.

    ON CONFLICT rather than a savepoint: with pysqlite, releasing the outermost SAVEPOINT
    commits on its own, which would split the row from the rest of its transaction (an
    outbox event). On PostgreSQL a concurrent insert of the same key makes this wait for it,
    then do nothing.
    """
    return session.scalar(upsert(session, table).values(**values)
                          .on_conflict_do_nothing(index_elements=index_elements)
                          .returning(returning))


def writes_in_one_statement(session: Session) -> bool:
    """Whether the database chains writes in one statement (data-modifying WITH, on
    PostgreSQL): a caller may then send a whole sign-up as one statement, or else runs it
    step by step."""
    return _postgresql(session)


# --- housekeeping ------------------------------------------------------------------------


def refresh_statistics(session: Session, *tables: Table) -> None:
    """ANALYZE ``tables`` on PostgreSQL (a no-op elsewhere), in the session's transaction.

    A table that grew from nearly empty within minutes still has the statistics of its empty
    days until autovacuum comes round; the planner then picks nested loops over what it
    believes are a few rows (measured: a 10 s report query over one edition's 138k article
    rows, and foreign-key checks that made COPY 3x slower). The planner calls this as an
    edition's rows double.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ANALYZE " + ", ".join(f'"{t.name}"' for t in tables))


@contextmanager
def exclusive(session: Session, name: str) -> Iterator[None]:
    """Hold a lock named ``name`` across every process that shares this database.

    PostgreSQL: an advisory lock on a connection of its own (the session's goes back to the
    pool at each commit; a worker that dies drops the connection and with it the lock).
    SQLite, which is one machine: a lock file beside the database.
    """
    engine = session.get_bind()
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                connection.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
                connection.commit()
        return
    database = engine.url.database
    path = Path(f"{database}.{name}.lock") if database else \
        get_settings().var_dir / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the planner's bulk writes -----------------------------------------------------------


def insert_deliveries(session: Session, edition_id: int,
                      rows: list[tuple[int, str, str, datetime | None]],
                      created_at: datetime, due_by: datetime | None = None
                      ) -> list[tuple[int, int]]:
    """Queue a page of deliveries, (reader id, content key, Message-ID, not before) each;
    returns their (id, reader id) in the order given. One whose not_before is at or before
    ``due_by`` goes to the queue now (queued_at = created_at); a later one is held for its
    wave (queued_at NULL, editions/waves.py)."""
    due_by = due_by or created_at
    if _postgresql(session):
        # Each column as one comma-separated string, not 200 rows of VALUES: psycopg parses a
        # statement's placeholders in Python and caches that only up to 50 of them, so the
        # multi-row INSERT was parsed afresh for every page (15 % of planning, py-spy); and it
        # quotes a list's strings for an array one by one in Python (a quarter of planning).
        # Neither a content key (hex) nor a Message-ID (hex@domain) can hold a comma.
        return [tuple(r) for r in session.execute(_UNNEST_DELIVERIES, {
            "edition_id": edition_id, "created_at": created_at, "due_by": due_by,
            "readers": ",".join([str(r[0]) for r in rows]),
            "keys": ",".join([r[1] for r in rows]),
            "message_ids": ",".join([r[2] for r in rows]),
            # '' is NULL (string_to_array's third argument); a page has a few distinct times.
            "not_before": ",".join([_iso(r[3]) for r in rows])})]
    return [tuple(r) for r in session.execute(
        insert(Delivery).returning(Delivery.id, Delivery.reader_id, sort_by_parameter_order=True),
        [{"edition_id": edition_id, "reader_id": reader_id, "status": DeliveryStatus.QUEUED,
          "content_key": key, "message_id": message_id, "created_at": created_at,
          "not_before": not_before,
          "queued_at": created_at if not_before is not None and not_before <= due_by else None}
         for reader_id, key, message_id, not_before in rows])]


@lru_cache(maxsize=256)
def _iso(at: datetime | None) -> str:
    return "" if at is None else at.isoformat()


_UNNEST_DELIVERIES = text(
    "INSERT INTO deliveries (edition_id, reader_id, status, content_key, message_id, attempts,"
    " reclaims, created_at, not_before, queued_at)"
    " SELECT :edition_id, r, 'queued', k, m, 0, 0, :created_at, n,"
    " CASE WHEN n <= :due_by THEN :created_at END"
    " FROM unnest(CAST(string_to_array(:readers, ',') AS INTEGER[]),"
    " string_to_array(:keys, ','), string_to_array(:message_ids, ','),"
    " CAST(string_to_array(:not_before, ',', '') AS TIMESTAMPTZ[])) AS page(r, k, m, n)"
    " RETURNING id, reader_id"
).bindparams(bindparam("created_at", type_=Delivery.__table__.c.created_at.type),
              bindparam("due_by", type_=Delivery.__table__.c.created_at.type))


def insert_digests(session: Session, edition_id: int,
                   rows: list[tuple[str, str, bool, str | None]]) -> None:
    """Store digests, (content key, items as JSON text, shared, locale) each, skipping keys
    stored already (a concurrent planner)."""
    if _postgresql(session):
        # The page's digests as one JSON document, [[key, items, shared, locale], …] (see
        # insert_deliveries). Keys and locales are [0-9a-f] and language subtags: no quoting.
        session.execute(_NEW_DIGESTS, {"edition_id": edition_id, "digests": "[" + ",".join([
            f'["{key}",{items},{"true" if shared else "false"},{json.dumps(locale or None)}]'
            for key, items, shared, locale in rows
        ]) + "]"})
        return
    # SQLite keeps JSON as its text: the items go in as written, not decoded and re-encoded.
    session.execute(_SQLITE_DIGESTS, [
        {"edition_id": edition_id, "content_key": key, "items": items, "shared": shared,
         "locale": locale or None}
        for key, items, shared, locale in rows])


_NEW_DIGESTS = text(
    "INSERT INTO edition_digests (edition_id, content_key, items, shared, locale)"
    " SELECT :edition_id, d ->> 0, d -> 1, CAST(d ->> 2 AS BOOLEAN), d ->> 3"
    " FROM json_array_elements(CAST(:digests AS JSON)) AS d ON CONFLICT DO NOTHING")

_SQLITE_DIGESTS = text(
    "INSERT INTO edition_digests (edition_id, content_key, items, shared, locale)"
    " VALUES (:edition_id, :content_key, :items, :shared, :locale) ON CONFLICT DO NOTHING")


def articles_carried(session: Session, edition_id: int) -> int:
    """How many articles the edition's digests carry as new (corrections aside)."""
    if _postgresql(session):
        # Counted where the rows are: decoding ~30,000 digests' items in Python to count a
        # few hundred ids was a tenth of planning 100,000 readers.
        return session.scalar(_COUNT_ARTICLES, {"edition_id": edition_id}) or 0
    # Streamed: at 100,000 readers an edition has ~30,000 digests, and loading their items at
    # once was the planner's memory peak (447 MB against the sender's 154 MB).
    return len({item[1] for items in session.scalars(
        select(EditionDigest.items).where(EditionDigest.edition_id == edition_id)
        .execution_options(yield_per=500))
        for item in items if item[0] == "new"})


_COUNT_ARTICLES = text(
    "SELECT count(DISTINCT item ->> 1) FROM edition_digests,"
    " json_array_elements(items) AS item"
    " WHERE edition_id = :edition_id AND item ->> 0 = 'new'")


# --- click counts ----------------------------------------------------------------------------


def add_story_clicks(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add each row's ``clicks`` to its story_clicks row (made if missing), in one statement.

    Several web processes flush into the same rows: an increment in the database, never a
    read-then-write in Python, so no flush can overwrite another's count."""
    if rows:
        session.execute(_adding_clicks(session.get_bind().dialect.name), rows)


@cache
def _adding_clicks(dialect: str) -> Insert:
    table = StoryClicks.__table__
    statement = _upsert(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.edition_id, table.c.article_id, table.c.topic_id,
                        table.c.delivery_id],
        set_={"clicks": table.c.clicks + statement.excluded.clicks,
              "last_at": statement.excluded.last_at})
def utc_hour(session: Session, column: ColumnElement) -> ColumnElement:
    """The UTC hour of a timestamp column as text ``YYYY-MM-DD HH``, to group by: a day of a
    large import is then a row per hour, not a row per reader (SQLite keeps UTC already)."""
    if _postgresql(session):
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", column)


def table_bytes(session: Session, *tables: Table) -> dict[str, dict[str, int]]:
    """Per table, its bytes on disk: {"table": heap and TOAST, "indexes": all its indexes}.
    PostgreSQL only (the benchmark's sizes before and after a prune); {} elsewhere, where
    SQLite keeps every table in one file."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return {}
    return {t.name: {"table": table, "indexes": indexes} for t in tables
            for table, indexes in [connection.exec_driver_sql(
                "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
                (t.name, t.name)).one()]}
