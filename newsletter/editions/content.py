"""What a delivery says: the digest or alert of one content key, its rows loaded for a
whole batch at once, rendered once per distinct content (personalised per reader by
newsletter.mail.compose)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import db
from newsletter.config import get_settings
from newsletter.mail import fragments, mime, rendering
from newsletter.mail.compose import common_context, message_template
from newsletter.metrics import DIGEST_RENDERS
from newsletter.models import Article, ArticleRevision, Edition, EditionDigest, Tag

# Encoded messages of distinct digests kept per worker process: ~10 kB each in memory (the
# articles, topics and layout they hold are shared: mime.Shared). A key recurs across an
# edition's batches; only digests more than one reader gets are kept (_worth_keeping). At
# 100,000 readers (30,402 distinct digests, 9,166 shared): 6,144 entries rendered 38,381
# times, but a 10,000-reader run no longer fills them and the worker's RSS grew x1.25 from it
# (387 -> 485 MB; the target is 1.25); 5,120 entries render 39,863 times at x1.21 (470 MB).
# Keeping every digest, 6,144 entries rendered 43,563 times (bench, 2026-11-28).
_TEMPLATE_CACHE_SIZE = 5120
_templates: OrderedDict[tuple[int, str, str, str], mime.MessageTemplate] = OrderedDict()


def digest_context(session: Session, edition: Edition, content_key: str) -> dict[str, Any]:
    """The template context of the digest of one content key of an edition."""
    key = (edition.id, content_key)
    if key not in _batch:
        if key not in _batch_keys:  # not part of the batch being sent: its rows afresh
            content_versions(session, [key])
        if key not in _batch:  # versioned from its cached ids: its items are read now
            _load_items(session, [key])
    return context_from_rows(edition, _rows(_batch.get(key, [])))


def context_from_rows(edition: Edition, rows: Sequence[Any]) -> dict[str, Any]:
    """The digest template context from (tag_id, kind, Article, Tag, ArticleRevision | None)
    rows in the order the email shows them (previews build these without a delivery)."""
    settings = get_settings()
    tz = ZoneInfo(settings.timezone)
    sections: list[dict[str, Any]] = []
    corrections: list[dict[str, Any]] = []
    for tag_id, kind, article, tag, revision in rows:
        item = _article_item(article, tz)
        if kind == "correction":
            old_title = revision.changes.get("title", [None])[0] if revision else None
            changed_at = revision.changed_at if revision else article.updated_at
            corrections.append({
                **item, "topic": {"slug": tag.slug, "name": tag.name},
                "updated_label": changed_at.astimezone(tz).strftime("%-d %b %Y, %H:%M"),
                "previous_title": old_title if old_title != article.title else None,
            })
            continue
        if not sections or sections[-1][0] != tag_id:
            sections.append((tag_id, tag, []))
        sections[-1][2].append(item)
    return {
        **common_context(),
        "edition": {"id": edition.id, "kind": edition.kind, "frequency": edition.frequency,
                    "date_label": edition.cutoff_at.astimezone(tz).strftime("%-d %B %Y")},
        "archive_url": f"{settings.base_url}/editions/{edition.id}",
        "article_count": len(rows) - len(corrections),
        "lead_stories": settings.digest_lead_stories,
        "sections": [_section(tag, items) for _, tag, items in sections],
        "corrections": corrections,
    }


_sections: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_SECTION_CACHE = 4096  # a topic's stories as each combination of topics splits them


def _section(tag: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A topic's part of a digest; the same dict for every digest that has the same stories
    under it, so fragments renders it once (found by identity, not compared)."""
    key = (tag.id, tag.slug, tag.name, *map(id, items))  # items are shared: see _article_item
    section = _sections.get(key)
    if section is None:
        section = _sections[key] = {"topic": {"slug": tag.slug, "name": tag.name},
                                    "articles": items}
        if len(_sections) > _SECTION_CACHE:
            _sections.popitem(last=False)
    return section


_items: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_ITEM_CACHE = 4096  # articles of the last weeks, a few hundred bytes each


def _article_item(article: Any, tz: ZoneInfo) -> dict[str, Any]:
    """An article as templates see it; the same dict for every digest that carries it
    (templates only read it), so a digest costs a lookup per article, not a strftime."""
    # By the row object first: the rows of a batch are the same objects in every digest
    # (_articles keeps them), and an int key is cheaper to hash than (id, datetime, zone).
    seen = _items_by_row.get(id(article))
    if seen is not None and seen[0] is article and seen[1] is tz:
        return seen[2]
    key = (article.id, article.updated_at, tz.key)
    item = _items.get(key)
    if item is None:
        item = _items[key] = {
            "title": article.title, "url": article.url, "summary": article.summary,
            "author": article.author, "image_url": article.image_url,
            "published_label": article.published_at.astimezone(tz).strftime("%-d %b %Y, %H:%M"),
        }
        if len(_items) > _ITEM_CACHE:
            _items.popitem(last=False)
    if len(_items_by_row) >= _ITEM_CACHE:
        _items_by_row.clear()
    # The row is kept with its item, so its id cannot be reused while the entry lives.
    _items_by_row[id(article)] = (article, tz, item)
    return item


_items_by_row: dict[int, tuple[Any, ZoneInfo, dict[str, Any]]] = {}


# The digests of the batch being sent and the rows they name, loaded by content_versions() in
# four queries for the whole batch: one query per digest (with ORM loading) cost more than
# rendering it. Rows are assembled only for a digest that is rendered (most are cached).
_batch: dict[tuple[int, str], list[list[Any]]] = {}
_batch_rows: dict[str, dict[int, Any]] = {"articles": {}, "tags": {}, "revisions": {}}
_batch_keys: set[tuple[int, str]] = set()  # the digests content_versions() was last asked for


def content_versions(session: Session,
                     contents: Collection[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """When the articles of each (edition, content key) last changed: part of the rendering
    cache key. Also keeps their rows, so that digest_context() needs no query of its own."""
    contents = set(contents)
    _batch.clear()
    _batch_keys.clear()
    _batch_keys.update(contents)
    _batch_rows["revisions"] = {}
    # A digest's items never change once planned: a key met before needs only its articles'
    # ids here, and its items (JSON, ~45 of them) are read again only if it is rendered.
    missing = []
    for c in contents:
        if c in _article_ids:
            _article_ids.move_to_end(c)
        else:
            missing.append(c)
    if missing:
        _load_items(session, missing)
    ids = {c: _article_ids[c] for c in contents if c in _article_ids}
    article_ids = set().union(*ids.values())
    articles = _articles(session, article_ids)
    tags = {t.id: t for t in session.execute(select(Tag.__table__))} if article_ids else {}
    _batch_rows.update(articles=articles, tags=tags)
    changed = {a: row.updated_at.isoformat() for a, row in articles.items()}
    # An article deleted since planning is left out of the digest (and of its version).
    return {c: max((changed[a] for a in article_ids_of if a in changed), default="")
            for c, article_ids_of in ids.items()}


# The article ids of digests met lately, by (edition, content key): as many as the encoded
# templates kept (_TEMPLATE_CACHE_SIZE), a few hundred bytes each. A content key is a hash of
# the digest's articles, so what it maps to cannot go stale.
_article_ids: OrderedDict[tuple[int, str], tuple[int, ...]] = OrderedDict()
_one_int: dict[int, int] = {}


def _load_items(session: Session, contents: Collection[tuple[int, str]]) -> None:
    """Read the items of these digests (and the revisions they name) into the batch."""
    wanted = set(contents)
    stored = [row for row in session.execute(
        select(EditionDigest.edition_id, EditionDigest.content_key, EditionDigest.items,
               EditionDigest.shared)
        .where(db.pairs_among(session, EditionDigest.edition_id, EditionDigest.content_key,
                              wanted))) if (row.edition_id, row.content_key) in wanted]
    revision_ids = {item[3] for row in stored for item in row.items if item[3] is not None}
    if revision_ids:
        _batch_rows["revisions"].update((r.id, r) for r in session.execute(
            select(ArticleRevision.__table__).where(ArticleRevision.id.in_(revision_ids))))
    for edition_id, content_key, items, shared in stored:
        key = (edition_id, content_key)
        _batch[key] = items
        if shared:
            _shared.add(key)
        # One int object per article id, not one per digest that names it (JSON gives new
        # ones): 8,192 digests of ~45 ids are ~14 MB otherwise.
        _article_ids[key] = tuple([_one_int.setdefault(item[1], item[1]) for item in items])
        _article_ids.move_to_end(key)
        if len(_article_ids) > _TEMPLATE_CACHE_SIZE:
            _article_ids.popitem(last=False)


def _rows(items: list[list[Any]]) -> list[tuple[Any, ...]]:
    """(tag_id, kind, article, tag, revision) for context_from_rows, from stored items."""
    articles, tags, revisions = (_batch_rows["articles"], _batch_rows["tags"],
                                 _batch_rows["revisions"])
    return [(tag_id, kind, articles[article_id], tags[tag_id], revisions.get(revision_id))
            for kind, article_id, tag_id, revision_id in items if article_id in articles]


_article_rows: dict[tuple[int, Any], Any] = {}
_ARTICLE_ROWS = 4096


def _articles(session: Session, ids: Collection[int]) -> dict[int, Any]:
    """Article rows by id, fetched in full only when new or changed since last seen here:
    every batch of an edition asks for the same few hundred articles."""
    if not ids:
        return {}
    versions = session.execute(
        select(Article.id, Article.updated_at).where(db.one_of(session, Article.id, ids))).all()
    missing = [a for a, at in versions if (a, at) not in _article_rows]
    if missing:
        if len(_article_rows) + len(missing) > _ARTICLE_ROWS:
            _article_rows.clear()
        rows = session.execute(
            select(Article.__table__).where(db.one_of(session, Article.id, missing)))
        for row in rows:
            _article_rows[(row.id, row.updated_at)] = row
    return {a: _article_rows[(a, at)] for a, at in versions if (a, at) in _article_rows}


def rendered_digest(session: Session, edition: Edition,
                    content_key: str) -> rendering.RenderedEmail:
    """Render (Jinja2, with premailer per fragment and layout) one content of an edition."""
    # The template is the edition's kind: email_templates/digest/ or email_templates/alert/.
    # Premailer runs per article fragment and per layout shell, not per digest (fragments.py).
    result = fragments.render(edition.kind, digest_context(session, edition, content_key))
    DIGEST_RENDERS.inc()
    return result


def digest_message(session: Session, edition: Edition, content_key: str,
                   version: str = "") -> mime.MessageTemplate:
    """The message of one content key, rendered and encoded once per worker process."""
    # The cutoff guards against a reused edition id (SQLite reuses rowids after deletes);
    # the version makes an article edited mid-edition render afresh, so what a reader gets
    # is the article as it was when their delivery was claimed (or newer).
    key = (edition.id, edition.cutoff_at.isoformat(), content_key, version)
    hit = _templates.get(key)
    if hit is not None:
        _templates.move_to_end(key)
        return hit
    template = message_template(rendered_digest(session, edition, content_key))
    if _worth_keeping((edition.id, content_key)):
        _templates[key] = template
        if len(_templates) > _TEMPLATE_CACHE_SIZE:
            _templates.popitem(last=False)
    return template


class _Recent:
    """Keys seen lately, as hashes in two generations of up to ``size`` each: ~50 bytes a
    key where the (edition, content key) tuples in an OrderedDict took ~270. Two keys with
    one hash would only keep a digest that need not be kept."""

    __slots__ = ("size", "new", "old")

    def __init__(self, size: int) -> None:
        self.size, self.new, self.old = size, set[int](), set[int]()

    def __contains__(self, key: object) -> bool:
        h = hash(key)
        return h in self.new or h in self.old

    def add(self, key: object) -> None:
        if len(self.new) >= self.size:
            self.old, self.new = self.new, set()
        self.new.add(hash(key))

    def clear(self) -> None:
        self.new.clear()
        self.old.clear()


# Most of an edition's distinct digests have one reader (21,236 of 30,402 at 100,000
# readers): kept, they pushed out shared ones before their next reader came. A digest is kept
# when the planner has found a second reader for it by the time this process first meets it
# (edition_digests.shared), or when this process meets it again. Replayed on a real edition
# (bench/cache_sim.py), that is 39.0k renders instead of 43.5k with 6,144 kept (see above).
_shared = _Recent(8192)  # marked shared when loaded: an edition's shared digests and more
_rendered = _Recent(8192)  # rendered and not kept


def _worth_keeping(key: tuple[int, str]) -> bool:
    if key in _shared or key in _rendered:
        return True
    _rendered.add(key)
    return False


