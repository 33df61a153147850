"""Topic growth on each backend: every writer of a reader's topics or status logs the follows
it gained and lost, the log's sums stay the active followers of live topics, and the
figures come out per local day."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from newsletter import db, tokens
from newsletter.insight import growth
from newsletter.models import Reader, Topic, TopicFollow
from newsletter.newsroom import topics
from newsletter.readers import bounces, imports, privacy, subscriptions
from tests.conftest import offer_topics


def reader_id(session, email: str) -> int:
    return session.scalar(select(Reader.id).where(Reader.email == email))


def sign_up(email: str, slugs: list[str]) -> int:
    """Subscribe and confirm through the reader functions the form and the link call."""
    with db.session_scope() as session:
        rid = subscriptions.subscribe(session, email, slugs, "weekly", consent_given=True)
    with db.session_scope() as session:
        subscriptions.confirm(session, tokens.make("confirm", rid, email))
    return rid


def changes_since(mark: int) -> list[tuple]:
    """The log rows written after row id ``mark``: (reader id, topic slug, ±1, cause)."""
    with db.session_scope() as session:
        rows = session.execute(
            select(TopicFollow.reader_id, Topic.slug, TopicFollow.change, TopicFollow.cause)
            .join(Topic, Topic.id == TopicFollow.topic_id)
            .where(TopicFollow.id > mark)).all()
    return sorted((tuple(r) for r in rows), key=lambda r: (r[1], r[2], r[0] or 0))


def last_row() -> int:
    with db.session_scope() as session:
        return session.scalar(select(TopicFollow.id).order_by(TopicFollow.id.desc())) or 0


def assert_sums_are_followers() -> None:
    """The invariant: per topic, the log's sum is its active followers (0 when retired)."""
    with db.session_scope() as session:
        sums = Counter()
        for topic_id, change in session.execute(select(TopicFollow.topic_id, TopicFollow.change)):
            sums[topic_id] += change
        followers = growth._followers(session)
        for topic_id in session.scalars(select(Topic.id)):
            assert sums[topic_id] == followers.get(topic_id, 0), topic_id


def test_every_writer_logs_the_follows_it_changes(fresh) -> None:
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Energy", "Sport")
    # A sign-up follows nothing until it is confirmed.
    with db.session_scope() as session:
        a = subscriptions.subscribe(session, "a@example.org", ["syria", "energy"], "weekly",
                                    consent_given=True)
    assert changes_since(0) == []
    with db.session_scope() as session:
        subscriptions.confirm(session, tokens.make("confirm", a, "a@example.org"))
    assert changes_since(0) == [(a, "energy", 1, "confirm"), (a, "syria", 1, "confirm")]

    mark = last_row()
    with db.session_scope() as session:
        subscriptions.change_preferences(session, session.get(Reader, a),
                                         topics=["syria", "sport"], frequency="weekly")
    assert changes_since(mark) == [(a, "energy", -1, "preferences"),
                                   (a, "sport", 1, "preferences")]
    # Changing only the frequency changes no follow.
    mark = last_row()
    with db.session_scope() as session:
        subscriptions.change_preferences(session, session.get(Reader, a),
                                         topics=["syria", "sport"], frequency="daily")
    assert changes_since(mark) == []

    b = sign_up("b@example.org", ["syria"])
    mark = last_row()
    with db.session_scope() as session:
        topics.retire(session, "sport")
        topics.retire(session, "sport")  # twice is once
    assert changes_since(mark) == [(a, "sport", -1, "retire")]
    assert_sums_are_followers()
    mark = last_row()
    with db.session_scope() as session:
        topics.restore(session, "sport")
    assert changes_since(mark) == [(a, "sport", 1, "restore")]

    mark = last_row()
    with db.session_scope() as session:
        subscriptions.unsubscribe(session, tokens.make("unsubscribe", a, "a@example.org"),
                                  method="one-click")
        subscriptions.unsubscribe(session, tokens.make("unsubscribe", a, "a@example.org"),
                                  method="one-click")  # idempotent: logged once
    assert changes_since(mark) == [(a, "sport", -1, "unsubscribe"),
                                   (a, "syria", -1, "unsubscribe")]
    mark = last_row()
    with db.session_scope() as session:
        subscriptions.resubscribe(session, tokens.make("unsubscribe", a, "a@example.org"),
                                  consent_given=True)
    assert changes_since(mark) == [(a, "sport", 1, "resubscribe"),
                                   (a, "syria", 1, "resubscribe")]

    mark = last_row()
    with db.session_scope() as session:
        bounces.suppress_reader(session, session.get(Reader, b), "bounce", None,
                                {"kind": "hard"})
    assert changes_since(mark) == [(b, "syria", -1, "bounce")]

    mark = last_row()
    with db.session_scope() as session:
        imports.import_readers(session, [
            {"email": "c@example.org", "topics": "energy", "frequency": "weekly",
             "consented_at": "2026-01-05"},
            {"email": "p@example.org", "topics": "energy", "frequency": "weekly"},  # pending
            {"email": "a@example.org", "topics": "energy", "frequency": "weekly"},
        ])
        c = reader_id(session, "c@example.org")
    assert changes_since(mark) == [(a, "energy", 1, "import"), (c, "energy", 1, "import"),
                                   (a, "sport", -1, "import"), (a, "syria", -1, "import")]
    assert_sums_are_followers()

    mark = last_row()
    with db.session_scope() as session:
        privacy.erase(session, "a@example.org")
    # Erasure keeps the counts and names nobody: every row of the reader lost its id.
    assert changes_since(mark) == [(None, "energy", -1, "erase")]
    with db.session_scope() as session:
        assert session.scalar(select(TopicFollow.id).where(TopicFollow.reader_id == a)) is None
        assert session.scalar(select(TopicFollow.id).where(TopicFollow.reader_id.is_(None)))
    assert_sums_are_followers()


def test_a_retired_topic_is_lost_once(fresh) -> None:
    """A reader leaving, or dropping a topic, after it was retired loses it no second time."""
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Energy")
    a = sign_up("a@example.org", ["syria", "energy"])
    b = sign_up("b@example.org", ["syria", "energy"])
    with db.session_scope() as session:
        topics.retire(session, "energy")
    mark = last_row()
    with db.session_scope() as session:
        subscriptions.unsubscribe(session, tokens.make("unsubscribe", a, "a@example.org"),
                                  method="link")
        subscriptions.change_preferences(session, session.get(Reader, b), topics=["syria"],
                                         frequency="weekly")
    assert changes_since(mark) == [(a, "syria", -1, "unsubscribe")]
    # Brought back, it counts only the active reader who kept it (b dropped it, a left).
    with db.session_scope() as session:
        topics.create(session, "Energy")
    assert changes_since(mark)[-1:] == [(a, "syria", -1, "unsubscribe")]
    assert_sums_are_followers()


def test_growth_per_local_day_biggest_net_first(fresh) -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    with db.session_scope() as session:
        syria, energy, sport, quiet = offer_topics(session, "Syria", "Energy", "Sport", "Quiet")
        session.add_all([
            # 22:30 UTC on 5 December is already 6 December in Beirut (UTC+2).
            TopicFollow(topic_id=syria.id, change=1, cause="confirm",
                        at=datetime(2026, 12, 5, 22, 30, tzinfo=UTC)),
            TopicFollow(topic_id=syria.id, change=1, cause="confirm",
                        at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC)),
            TopicFollow(topic_id=syria.id, change=-1, cause="unsubscribe",
                        at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),
            TopicFollow(topic_id=energy.id, change=1, cause="import",
                        at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),
            TopicFollow(topic_id=energy.id, change=1, cause="import",
                        at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),
            TopicFollow(topic_id=sport.id, change=-1, cause="retire",
                        at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC)),
            # Before the window: not counted.
            TopicFollow(topic_id=sport.id, change=1, cause="confirm", at=now - timedelta(days=40)),
        ])
        session.add(Reader(email="r@example.org", status="active", topics=[energy]))
        session.add(Reader(email="p@example.org", status="pending", topics=[energy]))
    with db.session_scope() as session:
        topics.retire(session, "sport")
        found = growth.topic_growth(session, 30, "Asia/Beirut", now=now)
        one_day = growth.topic_growth(session, 1, "UTC", now=now)
    assert [(g.slug, g.gained, g.lost, g.net, g.followers, g.retired) for g in found] == [
        ("energy", 2, 0, 2, 1, False), ("syria", 2, 1, 1, 0, False),
        ("quiet", 0, 0, 0, 0, False), ("sport", 0, 1, -1, 0, True)]
    syria_days = {d["day"]: (d["gained"], d["lost"]) for d in found[1].as_dict()["days"]}
    assert len(syria_days) == 30 and min(syria_days) == "2026-11-08"
    assert max(syria_days) == "2026-12-07"
    assert (syria_days["2026-12-05"], syria_days["2026-12-06"], syria_days["2026-12-07"]) \
        == ((0, 0), (2, 0), (0, 1))
    assert [(g.slug, g.gained, g.lost) for g in one_day][:2] == [("energy", 2, 0),
                                                                 ("quiet", 0, 0)]
    assert one_day[0].days == [date(2026, 12, 7)]
