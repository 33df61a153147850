"""The database: engine per URL, session factory, migrations."""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import orjson
from sqlalchemy import Engine, Insert, Table, any_, bindparam, create_engine, event, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import ColumnElement

from newsletter.config import get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the web process read while a worker writes; busy_timeout makes writers queue
    # instead of failing with "database is locked" when web, worker and beat overlap.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# Connections a process keeps, and may open beyond them under load (PostgreSQL).
POOL_SIZE, POOL_OVERFLOW = 5, 5


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (default: the configured database)."""
    url = url or get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                # orjson reads JSON columns: a digest's items are read for each digest
                # rendered, and the json module spent 7 % of a render on them.
                engine = create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE,
                                       max_overflow=POOL_OVERFLOW,
                                       json_deserializer=orjson.loads)
            _engines[url] = engine
        return engine


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    url = url or get_settings().db_url
    factory = _factories.get(url)
    if factory is None:
        factory = sessionmaker(get_engine(url), expire_on_commit=False)
        _factories[url] = factory
    return factory


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Forget pooled connections (after fork, or when tests switch databases)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
        _factories.clear()


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url or get_settings().db_url
    return cfg


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` (the same migrations on SQLite and PostgreSQL)."""
    from alembic import command

    url = url or get_settings().db_url
    if url.startswith("sqlite:///"):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def insert_for(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ``on_conflict_do_*`` (PostgreSQL and SQLite alike)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def insert_ignoring_duplicates(session: Session, table: Table) -> Insert:
    """INSERT that skips rows whose primary key exists (another planner wrote them first)."""
    return _ignoring_duplicates(session.get_bind().dialect.name, table)


@cache
def _ignoring_duplicates(dialect: str, table: Table) -> Insert:
    # Built once per dialect and table and run with parameters: a statement is immutable,
    # and building it costs more than running it on the subscribe path.
    return insert_for(dialect, table).on_conflict_do_nothing()


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


def one_of(session: Session, column: ColumnElement, values: Iterable[object]) -> ColumnElement:
    """``column IN values``; on PostgreSQL ``column = ANY(:values)``, one array parameter.

    psycopg parses a statement's placeholders in Python and caches the result only up to 50
    parameters: a batch's ``IN`` of 200 ids was parsed afresh each time, ~5 ms a statement.
    """
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def pairs_among(session: Session, first: ColumnElement, second: ColumnElement,
                pairs: Iterable[tuple[object, object]]) -> ColumnElement:
    """Rows whose (first, second) may be among ``pairs``: exactly on SQLite (a row-value
    IN), a superset on PostgreSQL (each column ``= ANY``, see one_of), which the caller
    filters. Our pairs are (edition, content key) with one edition or two, so it is exact
    in practice."""
    pairs = set(pairs)
    if session.get_bind().dialect.name == "postgresql":
        return one_of(session, first, {a for a, _ in pairs}) & \
            one_of(session, second, {b for _, b in pairs})
    return tuple_(first, second).in_(pairs)
