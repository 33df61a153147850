"""Who gets which articles: the per-reader decision, on plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsletter.editions.selection import Candidates, ReaderRow, content_key, decide

NOW = datetime(2026, 11, 28, 6, tzinfo=UTC)
SYRIA, RUSSIA, JORDAN, ENERGY = 1, 2, 3, 4
NAMES = {SYRIA: "Syria", RUSSIA: "Russia", JORDAN: "Jordan", ENERGY: "Energy"}


def candidates(articles: dict[int, tuple[int, ...]], filter_ids=None, ages=None) -> Candidates:
    ages = ages or {}
    ingested = {a: NOW - timedelta(hours=ages.get(a, a)) for a in articles}
    return Candidates(ingested, dict(ingested), articles, NAMES, filter_ids)


def reader(*topics: int, last=None, rid: int = 7) -> ReaderRow:
    return ReaderRow(rid, last, frozenset(topics))


def test_article_on_several_followed_tags_appears_once_under_its_main_topic() -> None:
    c = candidates({10: (RUSSIA, SYRIA), 11: (SYRIA,), 12: (JORDAN,)})
    d = decide(reader(SYRIA, RUSSIA), c, set())
    assert sorted(d.article_ids) == [10, 11]
    assert {s.topic_id: s.article_ids for s in d.sections} == {RUSSIA: (10,), SYRIA: (11,)}


def test_article_filed_under_first_followed_tag_when_main_topic_not_followed() -> None:
    d = decide(reader(SYRIA), candidates({10: (RUSSIA, SYRIA)}), set())
    assert [(s.topic_id, s.article_ids) for s in d.sections] == [(SYRIA, (10,))]


def test_only_followed_tags_and_no_empty_digest() -> None:
    c = candidates({10: (RUSSIA,), 11: (ENERGY,)})
    assert decide(reader(JORDAN), c, set()) is None
    assert decide(reader(ENERGY), c, set()).article_ids == [11]


def test_never_an_article_already_sent() -> None:
    c = candidates({10: (SYRIA,), 11: (SYRIA,)})
    assert decide(reader(SYRIA), c, {(7, 10)}).article_ids == [11]
    assert decide(reader(SYRIA), c, {(7, 10), (7, 11)}) is None
    assert sorted(decide(reader(SYRIA, rid=8), c, {(7, 10)}).article_ids) == [10, 11]


def test_only_articles_since_the_last_digest() -> None:
    c = candidates({10: (SYRIA,), 11: (SYRIA,)}, ages={10: 30, 11: 2})
    assert decide(reader(SYRIA, last=NOW - timedelta(hours=10)), c, set()).article_ids == [11]


def test_sections_fullest_first_articles_newest_first() -> None:
    c = candidates({1: (ENERGY,), 2: (SYRIA,), 3: (SYRIA,), 4: (SYRIA,)})
    d = decide(reader(SYRIA, ENERGY), c, set())
    assert [s.topic_id for s in d.sections] == [SYRIA, ENERGY]
    assert d.sections[0].article_ids == (2, 3, 4)  # smaller id = fewer hours old here


def test_edition_tag_filter_limits_articles_and_sections() -> None:
    c = candidates({10: (SYRIA,), 11: (ENERGY, SYRIA)}, filter_ids=frozenset({ENERGY}))
    c.topic_ids.pop(10)  # candidate_articles() drops articles without a filter tag
    c.by_topic.clear()
    c.__post_init__()
    d = decide(reader(SYRIA, ENERGY), c, set())
    assert [(s.topic_id, s.article_ids) for s in d.sections] == [(ENERGY, (11,))]
    assert decide(reader(SYRIA), c, set()) is None


def test_identical_content_gives_identical_keys() -> None:
    c = candidates({10: (SYRIA,), 11: (RUSSIA,)})
    a = decide(reader(SYRIA, RUSSIA, rid=1), c, set())
    b = decide(reader(RUSSIA, SYRIA, rid=2), c, set())
    other = decide(reader(SYRIA, rid=3), c, set())
    assert a.content_key == b.content_key == content_key(a.sections)
    assert other.content_key != a.content_key
