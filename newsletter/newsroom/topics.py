"""Topics: what readers may follow, curated by editors; each covers one or more tags.

Articles carry tags (whatever an editor or a feed named); readers follow topics. A tag
first seen in an article or a feed is offered to nobody until an editor adds it to a topic,
unless ``TOPICS_FROM_TAGS`` keeps the old way (every new tag becomes a topic of its own, in
the transaction that creates the tag). Retiring a topic takes it off the forms and out of
every later edition; its followers' choices are kept, so the preference centre can show
it as no longer offered and nothing is lost if an editor brings it back.

Every change to topics goes through the functions here; the doors (API, CLI, demo) call
them and commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter import i18n, sql
from newsletter.config import get_settings
from newsletter.errors import TopicError, TopicNotFound
from newsletter.models import Reader, ReaderTopic, Tag, Topic, TopicTag, utcnow
from newsletter.newsroom.tags import get_or_create_tags, slugify
from newsletter.untrusted import has_controls

# Readers who still hear from us: an unsubscribed reader's old choices are not "followers".
FOLLOWING = ("active", "pending")
MAX_TAGS = 50


@dataclass(frozen=True)
class Retirement:
    """What retiring a topic does: asked before (a dry run) and answered after."""

    slug: str
    followers: int  # readers (active or pending) who follow it
    only_topic: int  # of them, those who follow no other live topic: they get nothing
    retired: bool  # False for the dry run

    def as_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "followers": self.followers,
                "follow_nothing_else": self.only_topic, "retired": self.retired}


def _text(value: str | None, what: str, limit: int, *, required: bool = False) -> str:
    text = " ".join((value or "").split())
    if required and not text:
        raise TopicError(f"a topic needs a {what}")
    if len(text) > limit or has_controls(text):
        raise TopicError(f"the {what} must be at most {limit} characters of text")
    return text


def _tag_names(tags: Iterable[str]) -> list[str]:
    names = [_text(t, "tag", 128) for t in tags]
    if not names or not all(names) or not all(slugify(n) for n in names):
        raise TopicError("a topic covers one or more tags, each a non-empty name")
    if len(names) > MAX_TAGS:
        raise TopicError(f"a topic covers at most {MAX_TAGS} tags")
    return names


def create(session: Session, name: str, *, tags: Sequence[str] | None = None,
           description: str = "", group: str | None = None) -> tuple[Topic, bool]:
    """The topic ``name`` (created: True) or the one already of that name (False, unchanged
    but brought back if it was retired). ``tags`` default to the name's slug; tags not yet
    seen are created."""
    name = _text(name, "name", 128, required=True)
    slug = slugify(name)
    if not slug:
        raise TopicError("a topic's name needs at least one letter or digit")
    description = _text(description, "description", 500)
    group_name = _text(group, "group", 128) or None
    names = _tag_names(tags if tags is not None else [slug])
    existing = session.scalar(select(Topic).where(Topic.slug == slug))
    if existing is None:
        last = session.scalar(select(func.max(Topic.position)))
        # Skipped, not an error, when a double click made the same topic meanwhile: that
        # one is the answer, as if this request had come second.
        made = session.execute(
            sql.upsert(session, Topic.__table__)
            .values(slug=slug, name=name, description=description, group_name=group_name,
                    position=(last + 1) if last is not None else 0, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["slug"]).returning(Topic.id)).scalar()
        if made is not None:
            topic = session.get_one(Topic, made)
            topic.tags = get_or_create_tags(session, names)
            session.flush()
            return topic, True
        existing = session.scalars(select(Topic).where(Topic.slug == slug)).one()
    existing.retired_at = None
    return existing, False


def get(session: Session, slug: str) -> Topic:
    topic = session.scalar(select(Topic).where(Topic.slug == slugify(slug or "")))
    if topic is None:
        raise TopicNotFound(f"no topic {slug!r}")
    return topic


_UNSET: Any = object()


def translated_names(names: dict[str, str]) -> dict[str, str]:
    """A topic's names in other languages, checked: each a language the site shows other
    than its own (LANGUAGE is ``name``), each a short line of text; empty ones dropped."""
    others = set(i18n.languages()) - {i18n.site_language()}
    out: dict[str, str] = {}
    for lang, value in names.items():
        if lang not in others:
            raise TopicError(f"a name in {lang!r}: the site shows no such language "
                             f"besides its own")
        text = _text(value, f"name in {i18n.language_name(lang)}", 128)
        if text:
            out[lang] = text
    return dict(sorted(out.items()))


def update(session: Session, slug: str, *, description: str | None = None,
           group: str | None = _UNSET, position: int | None = None,
           tags: Sequence[str] | None = None, names: dict[str, str] | None = None) -> Topic:
    """Change what is given (``group=None`` takes the topic out of its group; ``names``, the
    name in other languages, replaces them all: an empty one is no name in that language)."""
    topic = get(session, slug)
    if names is not None:
        topic.names = translated_names(names)
    if description is not None:
        topic.description = _text(description, "description", 500)
    if group is not _UNSET:
        topic.group_name = _text(group, "group", 128) or None
    if position is not None:
        if not -1_000_000 <= position <= 1_000_000:
            raise TopicError("position must be between -1000000 and 1000000")
        topic.position = position
    if tags is not None:
        topic.tags = get_or_create_tags(session, _tag_names(tags))
    session.flush()
    return topic


def retirement(session: Session, slug: str) -> Retirement:
    """What retiring ``slug`` would do, changing nothing: the confirmation's numbers."""
    topic = get(session, slug)
    followers = select(ReaderTopic.reader_id).join(Reader, Reader.id == ReaderTopic.reader_id)\
        .where(ReaderTopic.topic_id == topic.id, Reader.status.in_(FOLLOWING))
    count = session.scalar(select(func.count()).select_from(followers.subquery()))
    other = select(ReaderTopic.reader_id).join(Topic, Topic.id == ReaderTopic.topic_id).where(
        ReaderTopic.topic_id != topic.id, Topic.retired_at.is_(None))
    alone = session.scalar(select(func.count()).select_from(
        followers.where(ReaderTopic.reader_id.not_in(other)).subquery()))
    return Retirement(topic.slug, count or 0, alone or 0, retired=False)


def retire(session: Session, slug: str) -> Retirement:
    """Take the topic off the forms and out of later editions; its followers keep their
    other topics (and the choice, shown as no longer offered). Idempotent."""
    counts = retirement(session, slug)
    topic = get(session, slug)
    if topic.retired_at is None:
        topic.retired_at = utcnow()
        session.flush()
    return Retirement(counts.slug, counts.followers, counts.only_topic, retired=True)


def get_tag(session: Session, slug: str) -> Tag:
    tag = session.scalar(select(Tag).where(Tag.slug == slugify(slug or "")))
    if tag is None:
        raise TopicNotFound(f"no tag {slug!r}")
    return tag


def cover(session: Session, slug: str, tag_slug: str) -> Topic:
    """Add the existing tag ``tag_slug`` to the topics ``slug`` covers (the console's "add
    to topic" for a tag no topic covers yet). Covering it twice changes nothing."""
    topic = get(session, slug)
    tag = get_tag(session, tag_slug)
    if tag not in topic.tags:
        if len(topic.tags) >= MAX_TAGS:
            raise TopicError(f"a topic covers at most {MAX_TAGS} tags")
        topic.tags = [*topic.tags, tag]
        session.flush()
    return topic


def restore(session: Session, slug: str) -> Topic:
    """Bring a retired topic back: offered again, its followers' choices as they were."""
    topic = get(session, slug)
    topic.retired_at = None
    session.flush()
    return topic


def snapshot(session: Session, name_or_slug: str) -> dict[str, Any] | None:
    """The topic as ``to_dict`` shows it, or None: what a door compares after a change."""
    topic = session.scalar(select(Topic).where(Topic.slug == slugify(name_or_slug or "")))
    return to_dict(topic) if topic is not None else None


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What a change did, for the audit log: ``{}`` when nothing changed."""
    if before is None:
        made = {"name": after["name"], "tags": ", ".join(after["tags"]),
                "group": after["group"], "description": after["description"]}
        return {"change": "add", **{key: value for key, value in made.items() if value}}
    found: dict[str, Any] = {}
    for key in ("description", "group", "position"):
        if before[key] != after[key]:
            found[key] = f"{_shown(before[key])} → {_shown(after[key])}"
    for lang in sorted(set(before.get("names", {})) | set(after.get("names", {}))):
        old, new = before.get("names", {}).get(lang), after.get("names", {}).get(lang)
        if old != new:
            found[f"name ({lang})"] = f"{_shown(old)} → {_shown(new)}"
    added = sorted(set(after["tags"]) - set(before["tags"]))
    removed = sorted(set(before["tags"]) - set(after["tags"]))
    if added:
        found["tags added"] = ", ".join(added)
    if removed:
        found["tags removed"] = ", ".join(removed)
    if before["retired"] != after["retired"]:
        return {"change": "retire" if after["retired"] else "restore", **found}
    return {"change": "edit", **found} if found else {}


def _shown(value: Any) -> str:
    return "(none)" if value is None or value == "" else str(value)


def count(session: Session, *, retired: bool = False) -> int:
    """How many topics are live (or retired)."""
    state = Topic.retired_at.is_not(None) if retired else Topic.retired_at.is_(None)
    return session.scalar(select(func.count(Topic.id)).where(state)) or 0


def page(session: Session, *, retired: bool = False, limit: int = 50,
         offset: int = 0) -> list[dict[str, Any]]:
    """One page of the live (or retired) topics in form order, with followers."""
    state = Topic.retired_at.is_not(None) if retired else Topic.retired_at.is_(None)
    found = list(session.scalars(select(Topic).where(state).order_by(
        Topic.position, Topic.name, Topic.id).limit(limit).offset(offset)))
    counts = dict(session.execute(
        select(ReaderTopic.topic_id, func.count())
        .join(Reader, Reader.id == ReaderTopic.reader_id)
        .where(Reader.status.in_(FOLLOWING), ReaderTopic.topic_id.in_([t.id for t in found]))
        .group_by(ReaderTopic.topic_id)).all())
    return [to_dict(t, counts.get(t.id, 0)) for t in found]


def listing(session: Session) -> list[dict[str, Any]]:
    """Every topic (retired ones last) with its tags and how many readers follow it."""
    counts = dict(session.execute(
        select(ReaderTopic.topic_id, func.count())
        .join(Reader, Reader.id == ReaderTopic.reader_id)
        .where(Reader.status.in_(FOLLOWING)).group_by(ReaderTopic.topic_id)).all())
    topics = session.scalars(select(Topic)).all()
    return [to_dict(t, counts.get(t.id, 0)) for t in sorted(
        topics, key=lambda t: (t.retired_at is not None, t.position, t.name))]


def to_dict(topic: Topic, followers: int | None = None) -> dict[str, Any]:
    return {"slug": topic.slug, "name": topic.name, "description": topic.description,
            "group": topic.group_name, "position": topic.position,
            "tags": sorted(t.slug for t in topic.tags), "followers": followers,
            "names": dict(topic.names or {}),
            "retired": topic.retired_at is not None,
            "retired_at": topic.retired_at.isoformat() if topic.retired_at else None}


def offered(session: Session) -> list[tuple[str, list[Topic]]]:
    """The live topics a form offers, as (group, topics) sections in ``position`` order;
    a group sits where its first topic does, the ungrouped ones under ""."""
    groups: dict[str, list[Topic]] = {}
    for topic in session.scalars(select(Topic).where(Topic.retired_at.is_(None))
                                 .order_by(Topic.position, Topic.name, Topic.id)):
        groups.setdefault(topic.group_name or "", []).append(topic)
    return list(groups.items())


def live_by_slug(session: Session, slugs: Iterable[str]) -> list[Topic]:
    """The live topics among ``slugs``, in form order (unknown or retired ones left out)."""
    wanted = {slugify(s) for s in slugs if s}
    if not wanted:
        return []
    return list(session.scalars(select(Topic).where(
        Topic.slug.in_(wanted), Topic.retired_at.is_(None)).order_by(Topic.position, Topic.name)))


def all_tags(session: Session) -> list[Tag]:
    return list(session.scalars(select(Tag).order_by(Tag.slug)))


def uncovered_tags(session: Session, search: str = "", limit: int | None = None,
                   offset: int = 0) -> list[Tag]:
    """Tags no topic covers: what articles and feeds named that readers cannot follow yet
    (those whose name or slug holds ``search``; a page of them with ``limit``)."""
    stmt = _uncovered(search).order_by(Tag.slug).offset(offset)
    return list(session.scalars(stmt.limit(limit) if limit is not None else stmt))


def count_uncovered(session: Session, search: str = "") -> int:
    return session.scalar(select(func.count()).select_from(_uncovered(search).subquery())) or 0


def _uncovered(search: str):
    stmt = select(Tag).where(Tag.id.not_in(select(TopicTag.tag_id)))
    text = " ".join(search.split())
    if text:  # a search is text, never a pattern: % and _ match themselves
        stmt = stmt.where(or_(Tag.name.icontains(text, autoescape=True),
                              Tag.slug.contains(text.lower(), autoescape=True)))
    return stmt


def article_tags(session: Session, names: list[str]) -> list[Tag]:
    """The tags an article names, created when first seen; with ``TOPICS_FROM_TAGS`` each
    tag no topic covers yet becomes a topic of its own, in the same transaction."""
    tags = get_or_create_tags(session, names)
    if get_settings().topics_from_tags:
        _topics_for(session, tags)
    return tags


def _topics_for(session: Session, tags: list[Tag]) -> None:
    covered = set(session.scalars(select(TopicTag.tag_id).where(
        TopicTag.tag_id.in_([t.id for t in tags]))))
    taken = set(session.scalars(select(Topic.slug).where(
        Topic.slug.in_([t.slug for t in tags]))))
    fresh = [t for t in tags if t.id not in covered and t.slug not in taken]
    if not fresh:
        return
    last = session.scalar(select(func.max(Topic.position)))
    start = (last + 1) if last is not None else 0
    for i, tag in enumerate(fresh):
        session.add(Topic(slug=tag.slug, name=tag.name, position=start + i, tags=[tag],
                          created_at=utcnow()))
    session.flush()
