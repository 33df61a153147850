"""Story links through /r/ in rendered digests: minted once per edition × story × topic inside
the shared fragments (no premailer run more than without them), one per-reader token in
reader mode substituted like the unsubscribe link, and the story itself when counting is off
or the digest is a preview."""

from __future__ import annotations

import email
import re
from dataclasses import replace
from email import policy

from newsletter import click_links
from newsletter.mail import rendering
from newsletter.mail.digest import Entry, Topic
from tests.mail.test_rendering import _digest_content, reader

BASE = "https://news.example.com"
R_LINK = re.compile(r"https://news\.example\.com/r/([A-Za-z0-9_\-.]+)(?:/([A-Za-z0-9_\-.]+))?")


def renderer(mode: str) -> rendering.Renderer:
    return rendering.Renderer(from_address="Ledger <news@example.com>",
                              list_id="<digest.example.com>", site_name="The Ledger",
                              base_url=BASE, click_tracking=mode)


def contents():
    """Two digests of edition 7 that share story 1 under Syria; the second also has it under
    Energy (a reader following both)."""
    first = _digest_content()
    energy = Topic(2, "energy", "Energy")
    story = first.entries[0].story
    second = replace(first, content_key="k2", entries=(Entry("new", story, first.entries[0].topic),
                                                       Entry("new", story, energy)),
                     article_ids=(story.id,))
    return first, second


def message(r: rendering.Renderer, content, n: int, values: dict | None = None):
    raw = r.digest(content).message(to_addr=f"reader{n}@example.org",
                                    message_id=f"<d{n}@example.com>",
                                    unsubscribe_url=f"{BASE}/u/{n}", values=values or reader(n))
    return email.message_from_bytes(raw, policy=policy.default)


def html_and_text(msg) -> tuple[str, str]:
    return msg.get_body(("html",)).get_content(), msg.get_body(("plain",)).get_content()


def test_aggregate_links_name_edition_story_and_topic_and_cost_no_premailer_run() -> None:
    counted, off = renderer("aggregate"), renderer("off")
    for r in (counted, off):
        for n, content in enumerate(contents()):
            message(r, content, n)
    assert counted.premailer_runs == off.premailer_runs  # the links live in shared fragments

    first, second = contents()
    html, text = html_and_text(message(counted, second, 5))
    links = {click_links.read(token) for token, reader_part in R_LINK.findall(html)}
    assert {(t.edition_id, t.article_id, t.topic_id, t.delivery_id) for t in links} == {
        (7, 1, 1, None), (7, 1, 2, None)}  # one story under two topics: two counts
    assert set(R_LINK.findall(text)) == set(R_LINK.findall(html))
    assert "news.example.com/1?a=1" not in html  # the story itself only behind the redirect
    # Two readers of one digest get the same bytes but for their own values.
    one, two = (html_and_text(message(counted, first, n))[0] for n in (1, 2))
    assert R_LINK.findall(one) == R_LINK.findall(two)


def test_reader_links_share_the_story_token_and_end_in_each_readers_own() -> None:
    counted, off = renderer("reader"), renderer("off")
    first, _ = contents()
    parts = {}
    for d in (41, 42):
        values = {**reader(d), click_links.READER_PART: click_links.reader_part(d)}
        html, text = html_and_text(message(counted, first, d, values))
        parts[d] = R_LINK.findall(html)
        assert set(R_LINK.findall(text)) == set(parts[d])
        assert all(click_links.read(*p).delivery_id == d for p in parts[d])
        message(off, first, d)
    assert [p[0] for p in parts[41]] == [p[0] for p in parts[42]]
    assert counted.premailer_runs == off.premailer_runs  # one render for both readers


def test_off_mode_and_previews_link_straight_to_the_story() -> None:
    first, _ = contents()
    html, text = html_and_text(message(renderer("off"), first, 1))
    assert "/r/" not in html and "/r/" not in text
    assert 'href="https://news.example.com/1?a=1&amp;b=2"' in html
    # A preview's edition is never saved: nothing to count for, whatever the mode.
    preview = replace(first, edition=replace(first.edition, id=None))
    html = renderer("reader").rendered_digest(preview).html
    assert "/r/" not in html and 'href="https://news.example.com/1?a=1&amp;b=2"' in html
