"""Who gets which articles: a digest per reader, and readers grouped by identical content.

A pipeline of small functions over plain data. The edition's candidate articles are loaded
once; readers arrive in pages by id cursor; each reader's digest is decided in memory.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.editions import LOOKBACK
from newsletter.models import Article, ArticleTag, DeliveryArticle, Edition, Reader, ReaderTopic, Tag


@dataclass(frozen=True)
class Section:
    tag_id: int
    article_ids: tuple[int, ...]


@dataclass(frozen=True)
class Digest:
    reader_id: int
    sections: tuple[Section, ...]
    content_key: str

    @property
    def article_ids(self) -> list[int]:
        return [a for s in self.sections for a in s.article_ids]


@dataclass(frozen=True)
class ReaderRow:
    id: int
    last_digest_at: datetime | None
    topic_ids: frozenset[int]


@dataclass
class Candidates:
    """The articles an edition may carry, in the shapes the per-reader step needs."""

    ingested_at: dict[int, datetime]
    published_at: dict[int, datetime]
    tag_ids: dict[int, tuple[int, ...]]  # editor's order: the first is the main topic
    tag_names: dict[int, str]
    filter_tag_ids: frozenset[int] | None
    by_tag: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Index by tag so a reader costs the articles on their topics, not all of them.
        for article_id, tag_ids in self.tag_ids.items():
            for tag_id in tag_ids:
                self.by_tag.setdefault(tag_id, []).append(article_id)

    def __len__(self) -> int:
        return len(self.tag_ids)


def candidate_articles(session: Session, edition: Edition) -> Candidates:
    """Published articles received by the cutoff and not older than the frequency's window."""
    floor = edition.cutoff_at - LOOKBACK[edition.frequency]
    rows = session.execute(
        select(Article.id, Article.created_at, Article.published_at, ArticleTag.tag_id)
        .join(ArticleTag, ArticleTag.article_id == Article.id)
        .where(Article.status == "published", Article.created_at <= edition.cutoff_at,
               Article.published_at > floor)
        .order_by(Article.id, ArticleTag.position)
    ).all()
    ingested, published, tags = {}, {}, defaultdict(list)
    for article_id, created_at, published_at, tag_id in rows:
        ingested[article_id] = created_at
        published[article_id] = published_at
        tags[article_id].append(tag_id)
    filter_ids = None
    if edition.tags:
        filter_ids = frozenset(session.scalars(select(Tag.id).where(Tag.slug.in_(edition.tags))))
        tags = {a: t for a, t in tags.items() if filter_ids & set(t)}
    names = dict(session.execute(select(Tag.id, Tag.name)).all())
    return Candidates(ingested, published, {a: tuple(t) for a, t in tags.items()}, names,
                      filter_ids)


def readers_page(session: Session, edition: Edition, after_id: int, limit: int) -> list[ReaderRow]:
    """The next ``limit`` active readers of the edition's frequency, by id after ``after_id``."""
    query = (
        select(Reader.id, Reader.last_digest_at)
        .where(Reader.status == "active", Reader.frequency == edition.frequency,
               Reader.id > after_id)
        .order_by(Reader.id)
        .limit(limit)
    )
    rows = session.execute(query).all()
    if not rows:
        return []
    topics: dict[int, set[int]] = defaultdict(set)
    for reader_id, tag_id in session.execute(
        select(ReaderTopic.reader_id, ReaderTopic.tag_id)
        .where(ReaderTopic.reader_id.in_([r[0] for r in rows]))
    ):
        topics[reader_id].add(tag_id)
    return [ReaderRow(r[0], r[1], frozenset(topics[r[0]])) for r in rows]


def already_sent(session: Session, reader_ids: Iterable[int],
                 article_ids: Iterable[int]) -> set[tuple[int, int]]:
    """(reader, article) pairs that an earlier delivery already carried."""
    reader_ids, article_ids = list(reader_ids), list(article_ids)
    if not reader_ids or not article_ids:
        return set()
    return set(
        session.execute(
            select(DeliveryArticle.reader_id, DeliveryArticle.article_id)
            .where(DeliveryArticle.reader_id.in_(reader_ids),
                   DeliveryArticle.article_id.in_(article_ids))
        ).tuples()
    )


def decide(reader: ReaderRow, candidates: Candidates, sent: set[tuple[int, int]]) -> Digest | None:
    """The reader's digest, or None when there is nothing new for them (no empty digests).

    Each article appears once, filed under the first of its tags (in the editor's order)
    that the reader follows; sections run from the fullest to the thinnest.
    """
    follows = reader.topic_ids
    if candidates.filter_tag_ids is not None:
        follows = follows & candidates.filter_tag_ids
    if not follows:
        return None
    sections: dict[int, list[int]] = defaultdict(list)
    mine = {a for t in follows for a in candidates.by_tag.get(t, ())}
    for article_id in mine:
        tag_ids = candidates.tag_ids[article_id]
        if (reader.id, article_id) in sent:
            continue
        if reader.last_digest_at and candidates.ingested_at[article_id] <= reader.last_digest_at:
            continue
        home = next((t for t in tag_ids if t in follows), None)
        if home is not None:
            sections[home].append(article_id)
    if not sections:
        return None
    ordered = tuple(
        Section(tag_id, tuple(sorted(ids, key=lambda a: (candidates.published_at[a], a),
                                     reverse=True)))
        for tag_id, ids in sorted(sections.items(),
                                  key=lambda kv: (-len(kv[1]), candidates.tag_names[kv[0]]))
    )
    return Digest(reader.id, ordered, content_key(ordered))


def content_key(sections: tuple[Section, ...]) -> str:
    """Equal for readers whose digests differ only in personal links."""
    text = ";".join(f"{s.tag_id}:{','.join(map(str, s.article_ids))}" for s in sections)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
