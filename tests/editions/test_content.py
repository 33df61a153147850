"""An edition's content as a batch loads it: digests the renderer keeps are versioned without
reading their items, and render as they did."""

from __future__ import annotations

from sqlalchemy import select

from newsletter import db
from newsletter.editions import planning
from newsletter.editions import requests as editions
from newsletter.models import Delivery
from tests.helpers import newsroom


def test_a_digest_the_renderer_keeps_is_versioned_without_its_items_and_renders_the_same(
        fresh, dispatcher) -> None:
    """A digest the renderer keeps encoded is versioned from the article ids it holds, its
    items not read; one edited since is loaded whole again, and renders as it did."""
    from newsletter.editions import content
    from newsletter.mail import rendering

    newsroom()
    renderer = rendering.Renderer.from_settings()  # fresh: no earlier test's digests
    with dispatcher.drop():  # the worker stays out
        with db.session_scope() as session:
            edition_id = editions.request(session, "weekly", source="test").id
        with db.session_scope() as session:
            planning.plan(session, edition_id)
            keys = {(edition_id, k) for k in session.scalars(
                select(Delivery.content_key).where(Delivery.edition_id == edition_id))}
            assert len(keys) == 3  # syria, energy, both
            loaded = content.load_batch(session, keys, renderer)
            assert all(loaded[k].entries for k in keys)  # nothing held yet: all read
            first = {k: renderer.rendered_digest(loaded[k]) for k in keys}
            for k in keys:
                renderer.digest(loaded[k])
                renderer.digest(loaded[k])  # met again: kept
            # The next batch of the edition meets the same digests again.
            again_loaded = content.load_batch(session, keys, renderer)
            assert {k: again_loaded[k].version for k in keys} == \
                {k: loaded[k].version for k in keys}
            assert all(again_loaded[k].entries is None for k in keys)  # items not read
            fresh_renderer = rendering.Renderer.from_settings()
            whole = content.load_batch(session, keys, fresh_renderer)
            again = {k: fresh_renderer.rendered_digest(whole[k]) for k in sorted(keys)}
    for k in keys:
        assert (again[k].subject, again[k].text, again[k].html) == \
            (first[k].subject, first[k].text, first[k].html)
    assert all("Summary of" in r.text for r in again.values())  # stories, not empty digests

