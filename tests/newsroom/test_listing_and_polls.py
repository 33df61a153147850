"""What the console lists of the newsroom (newsroom.listing) and what each feed's last poll
did (newsroom.feeds.poll records it in feed_polls), on each backend."""

from __future__ import annotations

import pytest

from newsletter import db
from newsletter.config import reload_settings
from newsletter.newsroom import articles, feeds, listing

pytestmark = pytest.mark.usefixtures("fresh")


def publish(url: str, title: str, tags: list[str], summary: str = "Two sides met") -> int:
    with db.session_scope() as session:
        return articles.upsert(session, {"url": url, "title": title, "summary": summary,
                                         "tags": tags}).article.id


def test_articles_are_found_by_headline_words_tag_and_status_newest_first() -> None:
    first = publish("https://news.example/1", "Talks resume in Amman", ["Jordan"])
    second = publish("https://news.example/2", "Aid at 50% of need", ["Syria", "Jordan"])
    publish("https://news.example/2", "Aid at 30% of need", ["Syria", "Jordan"])  # correction
    with db.session_scope() as session:
        articles.mark_unpublished(session, first)
    with db.session_scope() as session:
        def ids(**where) -> list[int]:
            found = listing.articles(session, listing.ArticleFilter(**where), 25, 0)
            assert listing.count_articles(session, listing.ArticleFilter(**where)) == len(found)
            return [row.article.id for row in found]

        assert ids() == [second, first]
        assert ids(words="AMMAN") == [first] and ids(tag="syria") == [second]
        assert ids(words="50%") == [] and ids(words="30%") == [second]  # % is a character
        assert ids(words="_") == []
        assert ids(status="unpublished") == [first] and ids(status="nonsense") == [second, first]
        [row] = listing.articles(session, listing.ArticleFilter(tag="syria"), 25, 0)
        assert (row.revisions, row.corrections) == (1, 1)
        assert listing.count_revisions(session, first) == 1  # the unpublishing
        [revision] = listing.revisions(session, second, 25, 0)
        assert revision.substantial and revision.changes["title"][1] == "Aid at 30% of need"
        assert listing.articles(session, listing.ArticleFilter(), 1, 1)[0].article.id == first


def test_each_poll_records_what_it_did_for_every_configured_feed(monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_FEEDS", "tests/data/feed.rss World,tests/data/none.rss")
    reload_settings()
    try:
        with db.session_scope() as session:
            assert feeds.last_polls(session) == {}
            feeds.poll(session)
        with db.session_scope() as session:
            polls = feeds.last_polls(session)
            ok, failed = polls["tests/data/feed.rss"], polls["tests/data/none.rss"]
            assert ok.ok and ok.error is None and ok.result["created"] >= 1
            assert not failed.ok and "No such file" in failed.error and failed.result == {}
            first_poll, created = ok.polled_at, ok.result["created"]
            feeds.poll(session)  # the same feed again: one row per feed, the latest poll
        with db.session_scope() as session:
            polls = feeds.last_polls(session)
            assert len(polls) == 2
            again = polls["tests/data/feed.rss"]
            assert again.polled_at >= first_poll and again.result["created"] == 0
            assert again.result["unchanged"] == created
    finally:
        monkeypatch.delenv("NEWSLETTER_FEEDS")
        reload_settings()
