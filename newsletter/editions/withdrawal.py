"""Withdrawing an article: marked unpublished in the newsroom, then taken out of every
delivery not yet sent (one left empty is never sent) and so of every later edition."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from newsletter.editions.deliveries import finish_if_complete
from newsletter.editions.selection import Correction, by_language, content_key, items
from newsletter.models import Article, Delivery, Edition, EditionDigest, Topic
from newsletter.newsroom import articles
from newsletter.states import UNSENT, DeliveryStatus, EditionStatus


@dataclass
class Unpublished:
    article: Article
    deliveries_changed: int  # unsent deliveries the article was taken out of
    deliveries_suppressed: int  # of those, left with nothing and so never sent


def unpublish(session: Session, article_id: int) -> Unpublished:
    """Withdraw an article: never in a later edition, and out of every delivery not yet sent."""
    article = articles.mark_unpublished(session, article_id)
    changed, suppressed, edition_ids = _withdraw(session, article.id)
    for edition_id in edition_ids:
        finish_if_complete(session, edition_id, commit=False)
    return Unpublished(article, changed, suppressed)


def _withdraw(session: Session, article_id: int) -> tuple[int, int, set[int]]:
    """Take an article out of every unsent delivery; returns (changed, suppressed, editions).

    Each changed delivery gets the content key of what remains, ordered as selection.decide()
    would; one left with nothing is suppressed, never sent empty. Sent deliveries keep the
    old key, whose content stays stored: it is what those readers got.
    """
    still_open = select(Edition.id).where(Edition.status.in_(
        (EditionStatus.PLANNING, EditionStatus.SENDING, EditionStatus.PAUSED)))
    locales: dict[tuple[int, str], str | None] = {}
    carrying = {}
    for e, k, stored, locale in session.execute(
            select(EditionDigest.edition_id, EditionDigest.content_key, EditionDigest.items,
                   EditionDigest.locale)
            .where(EditionDigest.edition_id.in_(still_open))):
        if any(i[1] == article_id for i in stored):
            carrying[(e, k)], locales[(e, k)] = stored, locale
    if not carrying:
        return 0, 0, set()
    # FOR UPDATE (PostgreSQL): a sender's claim waits for us and then sees the new content
    # key. Deliveries already 'sending' are in the middle of SMTP and are left alone.
    rows = session.execute(
        select(Delivery.id, Delivery.edition_id, Delivery.content_key)
        .where(Delivery.status.in_(UNSENT),
               tuple_(Delivery.edition_id, Delivery.content_key).in_(list(carrying)))
        .with_for_update()
    ).all()
    if not rows:
        return 0, 0, set()
    remaining = {key: [i for i in stored if i[1] != article_id]
                 for key, stored in carrying.items()}
    published, langs = {}, {}
    for a, at, lang in session.execute(
            select(Article.id, Article.published_at, Article.lang)
            .where(Article.id.in_({i[1] for rest in remaining.values() for i in rest}))):
        published[a], langs[a] = at, lang
    names = dict(session.execute(select(Topic.id, Topic.name)).all())
    replaced: dict[tuple[int, str], str] = {}
    empty = content_key(())
    for (edition_id, key), rest in remaining.items():
        if not rest:
            # An empty content, so that the reader's history no longer holds the article.
            replaced[(edition_id, key)] = empty
            if session.get(EditionDigest, (edition_id, empty)) is None:
                session.add(EditionDigest(edition_id=edition_id, content_key=empty, items=[]))
            continue
        # Each language's sections as the planner orders them, the languages in the order
        # the digest had them (its reader's).
        sections: dict[tuple[str, int], list[int]] = defaultdict(list)
        for kind, article, topic_id, _ in rest:
            if kind == "new":
                sections[(langs.get(article, ""), topic_id)].append(article)
        order = tuple(dict.fromkeys(lang for lang, _ in sections))
        ordered = by_language({k: sorted(ids, key=lambda a: (published[a], a), reverse=True)
                               for k, ids in sections.items()}, order, names) if order else ()
        fixes = tuple(Correction(a, r, t) for kind, a, t, r in rest if kind == "correction")
        locale = locales[(edition_id, key)]
        new_key = replaced[(edition_id, key)] = content_key(ordered, fixes, locale or "")
        if session.get(EditionDigest, (edition_id, new_key)) is None:
            session.add(EditionDigest(edition_id=edition_id, content_key=new_key,
                                      items=items(ordered, fixes), locale=locale))
    session.flush()
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_key[replaced[(row.edition_id, row.content_key)]].append(row.id)
    for new_key, ids in by_key.items():
        values: dict[str, Any] = {"content_key": new_key}
        if new_key == empty:
            values.update(status=DeliveryStatus.SUPPRESSED, last_error="empty after unpublish")
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(**values))
    return len(rows), len(by_key.get(empty, ())), {r.edition_id for r in rows}
