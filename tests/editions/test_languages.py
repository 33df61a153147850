"""Languages in editions: a digest holds only stories in its reader's languages; a bilingual
reader gets one digest with a part per language, in their order; readers with the same
topics but other languages (or another language of the email) get other digests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from newsletter import db
from newsletter.editions import planning
from newsletter.editions import requests as editions
from newsletter.editions import selection as digests
from newsletter.editions.selection import Candidates, ReaderRow, decide
from newsletter.models import Delivery, EditionDigest, Reader
from tests.conftest import dump_log
from tests.helpers import add_readers, html_part, publish, text_part, wait_done

NOW = datetime(2026, 11, 28, 6, tzinfo=UTC)
SYRIA, ENERGY = 1, 2
NAMES = {SYRIA: "Syria", ENERGY: "Energy"}
# article → (topics, language); smaller ids are fewer hours old
ARTICLES = {10: ((SYRIA,), "en"), 11: ((SYRIA,), "ar"), 12: ((ENERGY,), "ar"),
            13: ((SYRIA,), "ar"), 14: ((ENERGY,), "en")}


def candidates() -> Candidates:
    ingested = {a: NOW - timedelta(hours=a) for a in ARTICLES}
    return Candidates(ingested, dict(ingested), {a: t for a, (t, _) in ARTICLES.items()}, NAMES,
                      None, lang={a: lang for a, (_, lang) in ARTICLES.items()},
                      site_languages=("en", "ar"), site_language="en")


def reader(*langs: str, rid: int = 7, locale: str = "") -> ReaderRow:
    return ReaderRow(rid, None, frozenset({SYRIA, ENERGY}), languages=tuple(langs) or None,
                     locale=locale or (langs[0] if langs else ""))


def parts(d) -> list[tuple[str, int, tuple[int, ...]]]:
    return [(s.lang, s.topic_id, s.article_ids) for s in d.sections]


def test_a_reader_gets_only_stories_in_their_languages() -> None:
    c = candidates()
    assert parts(decide(reader("ar"), c, set())) == [("ar", SYRIA, (11, 13)), ("ar", ENERGY, (12,))]
    # (sections from the fullest to the thinnest, then by name)
    assert parts(decide(reader("en"), c, set())) == [("en", ENERGY, (14,)), ("en", SYRIA, (10,))]


def test_a_bilingual_reader_gets_one_digest_a_part_per_language_in_their_order() -> None:
    c = candidates()
    ar_first = decide(reader("ar", "en"), c, set())
    assert parts(ar_first) == [("ar", SYRIA, (11, 13)), ("ar", ENERGY, (12,)),
                               ("en", ENERGY, (14,)), ("en", SYRIA, (10,))]
    en_first = decide(reader("en", "ar"), c, set())
    assert [s.lang for s in en_first.sections] == ["en", "en", "ar", "ar"]
    assert sorted(ar_first.article_ids) == sorted(en_first.article_ids) == sorted(ARTICLES)
    # Same stories, another order: another digest.
    assert ar_first.content_key != en_first.content_key


def test_readers_from_before_languages_read_every_language_in_the_sites_order() -> None:
    everyone = decide(reader(), candidates(), set())
    assert [s.lang for s in everyone.sections] == ["en", "en", "ar", "ar"]
    assert everyone.locale == "en"


def test_no_story_in_their_languages_is_no_digest() -> None:
    c = candidates()
    only_en = {a: v for a, v in ARTICLES.items() if v[1] == "en"}
    c = Candidates(c.ingested_at, c.published_at, {a: t for a, (t, _) in only_en.items()},
                   NAMES, None, lang={a: "en" for a in only_en}, site_languages=("en", "ar"),
                   site_language="en")
    assert decide(reader("ar"), c, set()) is None


def test_shared_digests_are_keyed_by_languages_and_by_the_emails_language() -> None:
    c = candidates()
    page = [reader("ar", rid=1), reader("ar", rid=2), reader("en", rid=3),
            reader("ar", rid=4, locale="en"), reader("ar", "en", rid=5), reader("en", "ar", rid=6)]
    chosen = {d.reader_id: d for d in (digests._shared_digest(r, c) for r in page)}
    assert chosen[1].content_key == chosen[2].content_key  # the same: shared
    keys = [chosen[r].content_key for r in (1, 3, 4, 5, 6)]
    assert len(set(keys)) == 5, keys
    # The Arabic stories in an email worded in English: the same sections, another locale.
    assert chosen[4].sections == chosen[1].sections and chosen[4].locale == "en"


def set_languages(emails: dict[str, str | None], locale: dict[str, str] | None = None) -> None:
    with db.session_scope() as session:
        for email, langs in emails.items():
            session.execute(update(Reader).where(Reader.email == email).values(
                languages=langs, locale=(locale or {}).get(email)))


def test_an_edition_by_language_sent_through_a_worker(fresh) -> None:
    """On each backend: readers of Arabic, English, both (in either order), and one from before
    languages; the worker sends each one email with the right stories, in their order and
    direction, and the digests are stored with the language of their words."""
    backend = fresh
    publish("Aid reaches Idlib", ["Syria"], lang="en")
    publish("وصول المساعدات إلى إدلب", ["Syria"], lang="ar-SY", url="https://news.example/ar/1")
    publish("أسعار النفط مستقرة", ["Energy"], lang="ar", url="https://news.example/ar/2")
    add_readers({"ar1@example.com": ["syria", "energy"], "ar2@example.com": ["syria", "energy"],
                 "en@example.com": ["syria", "energy"], "aren@example.com": ["syria", "energy"],
                 "enar@example.com": ["syria", "energy"], "old@example.com": ["syria"]})
    set_languages({"ar1@example.com": "ar", "ar2@example.com": "ar", "en@example.com": "en",
                   "aren@example.com": "ar,en", "enar@example.com": "en,ar",
                   "old@example.com": None},
                  locale={"ar1@example.com": "ar", "ar2@example.com": "ar",
                          "aren@example.com": "ar"})
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="test").id
    result = wait_done(edition_id)
    assert result["status"] == "done", dump_log(backend)
    assert result["counts"]["sent"] == 6
    with db.session_scope() as session:
        key_of = dict(session.execute(select(Reader.email, Delivery.content_key).join(Delivery)
                                      .where(Delivery.edition_id == edition_id)).all())
        locales = dict(session.execute(select(EditionDigest.content_key, EditionDigest.locale)
                                       .where(EditionDigest.edition_id == edition_id)).all())
    assert key_of["ar1@example.com"] == key_of["ar2@example.com"]
    assert len({key_of[e] for e in key_of if e != "ar2@example.com"}) == 5
    assert locales[key_of["ar1@example.com"]] == "ar"
    assert locales[key_of["en@example.com"]] == "en"

    mail = {str(m["To"]): m for m in backend.smtp.wait_for(6)}
    arabic = html_part(mail["ar1@example.com"])
    assert 'dir="rtl"' in arabic and "Aid reaches Idlib" not in arabic
    assert "وصول المساعدات إلى إدلب" in arabic and "أسعار النفط مستقرة" in arabic
    assert "Aid reaches Idlib" in html_part(mail["en@example.com"])
    assert "إدلب" not in html_part(mail["en@example.com"])
    # One email for a bilingual reader, their first language first.
    both = text_part(mail["aren@example.com"])
    assert both.index("إدلب") < both.index("Aid reaches Idlib")
    both = text_part(mail["enar@example.com"])
    assert both.index("Aid reaches Idlib") < both.index("إدلب")
    # Before languages, every story on their topics, as they got it then.
    old = text_part(mail["old@example.com"])
    assert "Aid reaches Idlib" in old and "إدلب" in old
    # The Arabic reader's subject is in Arabic.
    assert "نشرتك الأسبوعية" in str(mail["ar1@example.com"]["Subject"])


def test_an_alert_reaches_only_readers_of_its_language(fresh, dispatcher) -> None:
    dispatcher.drop()  # planned here, not by the worker
    add_readers({"ar@example.com": ["syria"], "en@example.com": ["syria"],
                 "any@example.com": ["syria"]}, frequency="immediate")
    set_languages({"ar@example.com": "ar", "en@example.com": "en", "any@example.com": None})
    publish("Aid reaches Idlib", ["Syria"], lang="en")
    with db.session_scope() as session:
        from newsletter.models import Edition

        edition = Edition(kind="alert", frequency="immediate", source="test",
                          requested_at=datetime.now(UTC) - timedelta(minutes=5),
                          cutoff_at=datetime.now(UTC) + timedelta(seconds=1),
                          status="planning", period_key="test-langs")
        session.add(edition)
        session.flush()
        edition_id = edition.id
    with db.session_scope() as session:
        planning.plan(session, edition_id)
        got = set(session.scalars(select(Reader.email).join(Delivery)
                                  .where(Delivery.edition_id == edition_id)))
    assert got == {"en@example.com", "any@example.com"}


def test_a_story_no_immediate_reader_reads_opens_no_alert_window(fresh, dispatcher) -> None:
    from newsletter.editions import alerts

    dispatcher.drop()
    add_readers({"en@example.com": ["syria"]}, frequency="immediate")
    set_languages({"en@example.com": "en"})
    arabic = publish("وصول المساعدات إلى إدلب", ["Syria"], lang="ar",
                     url="https://news.example/ar/1")
    english = publish("Aid reaches Idlib", ["Syria"], lang="en")
    with db.session_scope() as session:
        assert alerts.on_published(session, arabic) is None
        assert alerts.on_published(session, english) is not None

