"""Premailer per fragment ≡ premailer over the whole document, on sample digests."""

from __future__ import annotations

import random

import pytest

from newsletter.mail import rendering


@pytest.fixture
def renderer() -> rendering.Renderer:
    # A fresh one: its caches start empty, whatever other tests rendered.
    return rendering.Renderer.from_settings()


def _article(rnd: random.Random, i: int, j: int) -> dict:
    return {
        "title": rnd.choice([f"Talks {i}.{j} resume", f"“Quoted” & <b>not bold</b> {i}.{j}",
                             f"عنوان الخبر {i}.{j}", f"Élections à Amman {i}.{j}"]),
        "url": f"https://news.example.com/{i}/{j}?a=1&b='2'",
        "summary": "Officials said &amp; residents <i>described</i> a tense night. "
                   * rnd.randint(1, 4),
        "author": rnd.choice([None, "Al O'Neil", "Rania Haddad"]),
        "image_url": rnd.choice([None, f"https://img.example.com/{i}-{j}.jpg"]),
        "published_label": "3 Nov 2026, 10:00",
    }


def _context(seed: int, sections: int, per: int, corrections: int,
             lead: int | None = None) -> dict:
    rnd = random.Random(seed)
    secs = [{"topic": {"slug": f"t{i}", "name": rnd.choice(["Syria", "Jordan & Iraq",
                                                             "<Lebanon>", "روسيا"])},
             "articles": [_article(rnd, i, j) for j in range(rnd.randint(1, per))]}
            for i in range(sections)]
    fixes = [{**_article(rnd, 99, k), "topic": {"slug": "t0", "name": "Syria"},
              "updated_label": "4 Nov 2026, 09:00",
              "previous_title": rnd.choice([None, "Old & <wrong> headline"])}
             for k in range(corrections)]
    return {
        "site_name": "The Levant Ledger", "base_url": "https://news.example.com",
        **{n: rendering.placeholder(n) for n in ("email", "unsubscribe_url", "preferences_url")},
        "edition": {"id": 7, "kind": "digest", "frequency": "weekly",
                    "date_label": "5 November 2026"},
        "archive_url": "https://news.example.com/editions/7",
        "article_count": sum(len(s["articles"]) for s in secs),
        "sections": secs, "corrections": fixes, "lead_stories": lead,
    }


# (seed, topics, most stories per topic, corrections, stories shown whole per topic)
SAMPLES = [(1, 1, 1, 0, None), (2, 3, 5, 0, None), (3, 5, 8, 2, 3), (4, 0, 0, 1, 5),
           (5, 2, 3, 3, None), (6, 6, 2, 0, 1), (7, 4, 12, 1, 5)]


@pytest.mark.parametrize("seed,sections,per,corrections,lead", SAMPLES)
def test_fragment_rendering_matches_whole_document_premailer(renderer, seed, sections, per,
                                                             corrections, lead) -> None:
    context = _context(seed, sections, per, corrections, lead)
    whole = renderer.render("digest", context)
    assembled = renderer.assemble("digest", context)
    assert assembled.html == whole.html
    assert assembled.text == whole.text and assembled.subject == whole.subject
    # Personalisation works on the assembled HTML as on the whole one.
    values = {"email": "zoë@example.org", "unsubscribe_url": "https://x/u/1?a=1&b=2",
              "preferences_url": "https://x/p/1"}
    assert rendering.personalise(assembled, values).html == \
        rendering.personalise(whole, values).html


def test_premailer_runs_per_fragment_not_per_digest(renderer) -> None:
    # Twenty digests drawn from the same pool of stories: after the first few, no premailer.
    for seed in range(20):
        renderer.assemble("digest", _context(100 + seed % 4, 3, 4, 0))
    calls = renderer.premailer_runs
    assert 1 <= calls <= 4  # one per new shell / new set of fragments, not one per digest


def test_stories_past_the_lead_are_listed_by_headline(renderer) -> None:
    context = _context(8, 1, 1, 0, lead=2)
    rnd = random.Random(8)
    context["sections"][0]["articles"] = [_article(rnd, 0, j) for j in range(5)]
    context["article_count"] = 5
    for render in (renderer.render, renderer.assemble):
        email = render("digest", context)
        # Two whole stories, three headlines, and every story's link in both parts.
        assert email.html.count('class="article"') == 2
        assert email.html.count('class="headline"') == 3
        assert "More on" in email.html and "More on" in email.text
        for a in context["sections"][0]["articles"]:
            link = a["url"].replace("&", "&amp;")  # as premailer writes an href back
            assert link in email.html and a["url"] in email.text
        # Listed stories carry no summary or "read the story" link; the whole ones do.
        assert email.html.count('class="read-more"') == 2
        assert email.text.count("\n- ") == 3
