"""Property tests of the digest rules (pure data, no database): hypothesis generates
readers, articles and tags, and two consecutive editions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.editions.selection import Candidates, ReaderRow, decide

T0 = datetime(2026, 11, 1, tzinfo=UTC)
tags = st.integers(min_value=1, max_value=6)
articles = st.dictionaries(st.integers(min_value=1, max_value=40),
                           st.lists(tags, min_size=1, max_size=3, unique=True),
                           min_size=0, max_size=25)
readers = st.lists(st.frozensets(tags, max_size=4), min_size=1, max_size=8)


def candidates(arts: dict[int, list[int]]) -> Candidates:
    return Candidates(
        ingested_at={a: T0 + timedelta(minutes=a) for a in arts},
        published_at={a: T0 + timedelta(minutes=a) for a in arts},
        topic_ids={a: tuple(t) for a, t in arts.items()},
        topic_names={t: f"tag{t}" for t in range(1, 7)},
        filter_topic_ids=None)


@settings(max_examples=150, deadline=None)
@given(arts=articles, follows=readers, unsubscribed=st.sets(st.integers(0, 7)))
def test_each_article_once_only_followed_tags_never_twice_across_editions(
        arts, follows, unsubscribed) -> None:
    cands = candidates(arts)
    sent: set[tuple[int, int]] = set()
    rows = [ReaderRow(i, None, f) for i, f in enumerate(follows)]
    for _edition in range(2):
        for reader in rows:
            if reader.id in unsubscribed:  # an unsubscribed reader is never decided for
                continue
            digest = decide(reader, cands, sent)
            if digest is None:
                continue
            ids = digest.article_ids
            assert ids, "no empty digests"
            assert len(ids) == len(set(ids)), "each article once"
            for section in digest.sections:
                assert section.topic_id in reader.topic_ids, "only followed tags"
                for a in section.article_ids:
                    assert section.topic_id in cands.topic_ids[a]
                    # filed under the first of its tags the reader follows
                    assert section.topic_id == next(t for t in cands.topic_ids[a]
                                                  if t in reader.topic_ids)
            for a in ids:
                assert (reader.id, a) not in sent, "never twice across editions"
                sent.add((reader.id, a))
    # Everything a subscribed reader follows reached them, exactly once over both editions.
    for reader in rows:
        wanted = {a for a, t in arts.items() if set(t) & reader.topic_ids}
        got = {a for (r, a) in sent if r == reader.id}
        assert got == (set() if reader.id in unsubscribed else wanted)
