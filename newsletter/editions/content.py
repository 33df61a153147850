"""What a delivery says, loaded from the database for a whole batch at once.

:func:`load_batch` reads the digests of a batch (their items, articles, topics and revisions)
in a few queries and returns plain data (:class:`BatchContent` of
:class:`~newsletter.mail.digest.DigestContent`); rendering it is the renderer's alone
(``rendering.renderer().digest(content)``: data in, bytes out), and so is every cache. One
query per digest (with ORM loading) cost more than rendering it; a digest the renderer keeps
encoded has only its version computed here, its items are not read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import sql
from newsletter.mail.digest import DigestContent, EditionInfo, Entry, Story, Topic
from newsletter.mail.rendering import DIGEST_CACHE
from newsletter.models import Article, ArticleRevision, Edition, EditionDigest
from newsletter.models import Topic as TopicRow

Key = tuple[int, str]  # (edition id, content key)


class Held(Protocol):
    """What a renderer already holds (rendering.Renderer): the loader reads only the rest."""

    def held(self, edition_id: int, cutoff_at: datetime,
             content_key: str) -> tuple[str, tuple[int, ...]] | None: ...

    def story(self, article_id: int, updated_at: datetime) -> Story | None: ...


@dataclass(frozen=True)
class BatchContent:
    """The digests of a batch by (edition id, content key): plain data, no session."""

    digests: Mapping[Key, DigestContent] = field(default_factory=dict)

    def __getitem__(self, key: Key) -> DigestContent:
        return self.digests[key]

    def __contains__(self, key: object) -> bool:
        return key in self.digests


def edition_info(edition: Any) -> EditionInfo:
    return EditionInfo(id=edition.id, kind=edition.kind, frequency=edition.frequency,
                       cutoff_at=edition.cutoff_at, note=getattr(edition, "note", None))


def story(article: Any) -> Story:
    return Story(id=article.id, updated_at=article.updated_at, title=article.title,
                 url=article.url, summary=article.summary, author=article.author,
                 image_url=article.image_url, published_at=article.published_at,
                 lang=article.lang)


def topic(row: Any) -> Topic:
    names = getattr(row, "names", None) or {}
    return Topic(id=row.id, slug=row.slug, name=row.name, names=tuple(sorted(names.items())))


def entry(kind: str, story_: Story, topic_: Topic, revision: Any | None) -> Entry:
    """One line of a digest; a correction names the revision that changed the story."""
    if kind != "correction":
        return Entry(kind, story_, topic_)
    old_title = revision.changes.get("title", [None])[0] if revision else None
    return Entry(kind, story_, topic_, previous_title=old_title,
                 changed_at=revision.changed_at if revision else None)


def load_batch(session: Session, keys: Collection[Key], held: Held | None = None) -> BatchContent:
    """The digests of these (edition, content key) pairs, read in a few queries.

    ``held`` (the renderer) says which digests it keeps encoded and at which version: those
    come back with ``entries=None`` unless their articles changed since, and the article
    rows it met lately are not fetched again.
    """
    keys = set(keys)
    if not keys:
        return BatchContent()
    if len(keys) > DIGEST_CACHE:  # a batch this large could push a held digest out
        held = None
    editions = {e.id: e for e in session.execute(
        select(Edition.id, Edition.kind, Edition.frequency, Edition.cutoff_at, Edition.note)
        .where(Edition.id.in_({e for e, _ in keys})))}
    keys = {k for k in keys if k[0] in editions}
    kept: dict[Key, tuple[str, tuple[int, ...]]] = {}
    if held is not None:
        for k in keys:
            found = held.held(k[0], editions[k[0]].cutoff_at, k[1])
            if found is not None:
                kept[k] = found
    stored = _items(session, keys - kept.keys())
    article_ids = {a for ids in kept.values() for a in ids[1]}
    article_ids |= {item[1] for items, *_ in stored.values() for item in items}
    versions = dict(session.execute(
        select(Article.id, Article.updated_at).where(sql.one_of(session, Article.id,
                                                               article_ids))).all()) \
        if article_ids else {}
    changed = {a: at.isoformat() for a, at in versions.items()}

    def version(ids: Iterable[int]) -> str:
        # An article deleted since planning is left out of the digest (and of its version).
        return max((changed[a] for a in ids if a in changed), default="")

    out: dict[Key, DigestContent] = {}
    for k, (held_version, ids) in kept.items():
        now = version(ids)
        if now == held_version:
            out[k] = DigestContent(edition_info(editions[k[0]]), k[1], now, None, ids)
        else:  # edited since it was rendered: its items are read after all
            stored.update(_items(session, [k]))
    if stored:
        out.update(_contents(session, editions, stored, versions, version, held))
    return BatchContent(out)


def _items(session: Session, keys: Collection[Key]) -> dict[Key, tuple[list[Any], bool, str]]:
    """The stored items (kind, article id, topic id, revision id) of these digests, whether
    shared, and the language of their own words ("" for the site's)."""
    if not keys:
        return {}
    wanted = set(keys)
    rows = session.execute(
        select(EditionDigest.edition_id, EditionDigest.content_key, EditionDigest.items,
               EditionDigest.shared, EditionDigest.locale)
        .where(sql.pairs_among(session, EditionDigest.edition_id, EditionDigest.content_key,
                              wanted)))
    return {(r.edition_id, r.content_key): (r.items, bool(r.shared), r.locale or "")
            for r in rows if (r.edition_id, r.content_key) in wanted}


def _contents(session: Session, editions: Mapping[int, Any],
              stored: Mapping[Key, tuple[list[Any], bool, str]],
              versions: Mapping[int, datetime],
              version: Callable[[Iterable[int]], str],
              held: Held | None) -> dict[Key, DigestContent]:
    needed = {item[1] for items, *_ in stored.values() for item in items if item[1] in versions}
    stories: dict[int, Story] = {}
    if held is not None:
        for a in needed:
            met = held.story(a, versions[a])
            if met is not None:
                stories[a] = met
    if missing := needed - stories.keys():
        stories.update((row.id, story(row)) for row in session.execute(
            select(Article.__table__).where(sql.one_of(session, Article.id, missing))))
    topics = {t.id: topic(t) for t in session.execute(
        select(TopicRow.id, TopicRow.slug, TopicRow.name, TopicRow.names))}
    revision_ids = {item[3] for items, *_ in stored.values() for item in items
                    if item[3] is not None}
    revisions = {r.id: r for r in session.execute(
        select(ArticleRevision.id, ArticleRevision.changes, ArticleRevision.changed_at)
        .where(ArticleRevision.id.in_(revision_ids)))} if revision_ids else {}
    out = {}
    for k, (items, shared, locale) in stored.items():
        entries = tuple(entry(kind, stories[a], topics[t], revisions.get(r))
                        for kind, a, t, r in items if a in stories and t in topics)
        ids = tuple(item[1] for item in items)
        out[k] = DigestContent(edition_info(editions[k[0]]), k[1], version(ids), entries, ids,
                               shared, locale)
    return out


def contents_from_rows(edition: Any, rows: Sequence[tuple[Any, ...]],
                       content_key: str = "", locale: str = "") -> DigestContent:
    """A digest from (topic_id, kind, Article, Topic, ArticleRevision | None) rows in the order
    the email shows them (the preview builds these from the planner's decision)."""
    return DigestContent(edition_info(edition), content_key, "",
                         tuple(entry(kind, story(a), topic(t), rev)
                               for _topic_id, kind, a, t, rev in rows), locale=locale)
