"""The language of an article: from the article JSON (BCP 47, kept as its primary subtag), from
a feed's xml:lang or <language>, else the site's LANGUAGE; garbage is a clear 422."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, langtags
from newsletter.models import Article, ArticleRevision
from newsletter.newsroom import articles, feeds
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize("tag,primary", [("ar", "ar"), ("ar-JO", "ar"), ("EN-gb", "en"),
                                         ("en_US", "en"), ("zh-Hant-TW", "zh"),
                                         ("de-CH-1901", "de"), ("ar-Arab-JO-u-nu-arab", "ar")])
def test_well_formed_tags_give_their_primary_subtag(tag: str, primary: str) -> None:
    assert langtags.primary(tag) == primary


@pytest.mark.parametrize("tag", ["", "e", "english!", "x-private", "ar--JO", "123", "a" * 70,
                                 "ar JO", "ar-<script>"])
def test_garbage_is_no_language(tag: str) -> None:
    with pytest.raises(ValueError, match="not a BCP 47 language tag"):
        langtags.primary(tag)


def test_lang_through_the_api_default_update_and_refusals(fresh) -> None:
    client = TestClient(create_app())
    base = {"url": "https://news.example/a/1", "title": "Aid reaches Idlib", "tags": ["Syria"]}
    r = client.post("/api/articles", headers=AUTH, json=base)
    assert r.status_code == 201, r.text
    assert r.json()["lang"] == "en"  # the site's LANGUAGE (the default operators get)

    r = client.post("/api/articles", headers=AUTH, json={**base, "url": "https://news.example/a/2",
                                                          "title": "وصول المساعدات",
                                                          "lang": "ar-JO"})
    assert r.status_code == 201 and r.json()["lang"] == "ar"

    for bad, why in [("arabic!", "not a BCP 47 language tag"),
                     ("fr", "'fr' is not one of this site's languages (en, ar)")]:
        r = client.post("/api/articles", headers=AUTH, json={**base, "lang": bad})
        assert r.status_code == 422 and why in r.text and "lang" in r.text, r.text
    with db.session_scope() as session:  # refused: nothing changed
        assert session.scalar(select(Article.lang).where(Article.url == base["url"])) == "en"

    # An update without lang keeps it; one with a new lang records it in the revision,
    # which is housekeeping, not a correction readers hear about.
    r = client.post("/api/articles", headers=AUTH, json={**base, "summary": "s"})
    assert r.json()["lang"] == "en"
    r = client.post("/api/articles", headers=AUTH, json={**base, "summary": "s", "lang": "ar"})
    assert r.status_code == 200 and r.json()["lang"] == "ar"
    with db.session_scope() as session:
        revision = session.scalars(select(ArticleRevision).order_by(ArticleRevision.id.desc())
                                   ).first()
        assert revision.changes["lang"] == ["en", "ar"] and revision.substantial is False


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Al-Sahafa</title>
<link>https://news.example/</link><language>ar-JO</language>
<item><title>وصول المساعدات إلى إدلب</title><link>https://news.example/ar/1</link>
<category>Syria</category></item></channel></rss>"""

ATOM = """<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en-GB">
<title>Ledger</title><id>urn:ledger</id>
<entry><title>Aid reaches Idlib</title><link href="https://news.example/en/1"/><id>1</id>
<category term="Syria"/></entry>
<entry xml:lang="ar"><title>أسعار النفط مستقرة</title><link href="https://news.example/ar/2"/>
<id>2</id><category term="Energy"/></entry>
<entry><title xml:lang="fr">Le prix du pétrole</title><link href="https://news.example/fr/3"/>
<id>3</id><category term="Energy"/></entry>
</feed>"""

BARE = """<?xml version="1.0"?><rss version="2.0"><channel><title>Plain</title>
<link>https://news.example/</link><item><title>No language said</title>
<link>https://news.example/x/1</link><category>Syria</category></item></channel></rss>"""


def test_feeds_give_their_language_or_the_sites(fresh, tmp_path) -> None:
    for name, data in (("a.rss", RSS), ("b.atom", ATOM), ("c.rss", BARE)):
        (tmp_path / name).write_bytes(data.encode())
    with db.session_scope() as session:
        rss = feeds.import_feed(session, str(tmp_path / "a.rss"))
        atom = feeds.import_feed(session, str(tmp_path / "b.atom"))
        bare = feeds.import_feed(session, str(tmp_path / "c.rss"))
    assert (rss.created, atom.created, bare.created) == (1, 2, 1)
    # A language the site does not publish in is skipped, with the reason said.
    assert atom.skipped == 1 and "not one of this site's languages" in atom.reasons[0]
    with db.session_scope() as session:
        langs = dict(session.execute(select(Article.url, Article.lang)).all())
    assert langs == {"https://news.example/ar/1": "ar", "https://news.example/en/1": "en",
                     "https://news.example/ar/2": "ar", "https://news.example/x/1": "en"}


def test_validate_names_the_field() -> None:
    with pytest.raises(articles.ArticleError, match=r"^lang: "):
        articles.validate({"url": "https://x.example/1", "title": "t", "tags": ["a"],
                           "lang": "??"})
