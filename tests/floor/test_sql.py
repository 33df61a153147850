"""newsletter/sql.py: each operation gives the same answer on SQLite and PostgreSQL (the
``backend`` fixture runs every test on both). The planner's bulk writes are run by the
planning tests; these are the small ones every room uses."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from newsletter import db, sql
from newsletter.models import Edition, FormNonce, Tag, utcnow


def tags(*slugs: str) -> dict[str, int]:
    with db.session_scope() as session:
        for slug in slugs:
            session.add(Tag(slug=slug, name=slug.title()))
    with db.session_scope() as session:
        return dict(session.execute(select(Tag.slug, Tag.id)).all())


def test_one_of_and_its_named_form_match_the_same_rows(fresh) -> None:
    ids = tags("syria", "iran", "energy")
    with db.session_scope() as session:
        by_value = set(session.scalars(select(Tag.slug).where(
            sql.one_of(session, Tag.id, [ids["syria"], ids["energy"], 10**6]))))
        named = sql.one_of_named(session, Tag.slug, "slugs")
        assert sql.one_of_named(session, Tag.slug, "slugs") is named  # built once
        by_name = set(session.scalars(select(Tag.slug).where(named),
                                      {"slugs": ["syria", "energy", "unknown"]}))
        pairs = set(session.execute(select(Tag.id, Tag.slug).where(
            sql.pairs_among(session, Tag.id, Tag.slug, {(ids["iran"], "iran")}))).all())
        assert sql.one_of(session, Tag.id, []) is not None
        assert session.scalars(select(Tag.id).where(sql.one_of(session, Tag.id, []))).all() == []
    assert by_value == by_name == {"syria", "energy"}
    assert pairs == {(ids["iran"], "iran")}


def test_insert_unless_present_inserts_once(fresh) -> None:
    values = {"kind": "digest", "frequency": "weekly", "period_key": "2026-W50",
              "status": "planning", "source": "test", "requested_at": utcnow()}
    with db.session_scope() as session:
        first = sql.insert_unless_present(session, Edition.__table__, values,
                                          ["kind", "frequency", "period_key"], Edition.id)
        again = sql.insert_unless_present(session, Edition.__table__, values,
                                          ["kind", "frequency", "period_key"], Edition.id)
    assert first is not None and again is None
    with db.session_scope() as session:
        assert session.scalars(select(Edition.id)).all() == [first]


def test_upsert_and_insert_ignoring_duplicates(fresh) -> None:
    table = FormNonce.__table__
    expires = utcnow()
    with db.session_scope() as session:
        statement = sql.upsert(session, table)
        assert sql.upsert(session, table) is statement  # a cache may key on it
        spend = statement.on_conflict_do_nothing().returning(table.c.nonce)
        assert session.execute(spend, {"nonce": "n1", "expires_at": expires}).first()
        assert session.execute(spend, {"nonce": "n1", "expires_at": expires}).first() is None
        session.execute(sql.insert_ignoring_duplicates(session, table),
                        [{"nonce": "n1", "expires_at": expires},
                         {"nonce": "n2", "expires_at": expires}])
    with db.session_scope() as session:
        assert sorted(session.scalars(select(FormNonce.nonce))) == ["n1", "n2"]


def test_exclusive_holds_off_a_second_holder_until_the_first_lets_go(fresh) -> None:
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(10)
        with db.session_scope() as session, sql.exclusive(session, "test-lock"):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with db.session_scope() as session, sql.exclusive(session, "test-lock"):
        inside.set()
        time.sleep(0.3)  # the second one is waiting at the lock meanwhile
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def test_refresh_statistics_runs_in_the_session(fresh) -> None:
    tags("syria")
    with db.session_scope() as session:
        sql.refresh_statistics(session, Tag.__table__)
        assert session.scalar(select(Tag.slug)) == "syria"
