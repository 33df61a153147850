"""What one digest (or alert) says, as plain data, and the template context made from it.

The database is read elsewhere (``newsletter.editions.content.load_batch``); everything here
is data in, data out, so a digest renders in a test without one. The context's article and
section dicts are :class:`~newsletter.mail.fragments.Record`\\ s, the same object for every
digest that carries the same article or the same stories under a topic, so the fragment
renderer finds each in its caches at the cost of a stored hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from newsletter import click_links, i18n
from newsletter.mail.fragments import Record
from newsletter.mail.lru import FIFO
from newsletter.untrusted import strip_controls


@dataclass(frozen=True, slots=True)
class Story:
    """An article as a digest shows it, at one version (``updated_at``)."""

    id: int
    updated_at: datetime
    title: str
    url: str
    summary: str
    author: str | None
    image_url: str | None
    published_at: datetime
    lang: str = ""  # BCP 47 primary subtag; "" is the site's language


@dataclass(frozen=True, slots=True)
class Topic:
    id: int
    slug: str
    name: str
    names: tuple[tuple[str, str], ...] = ()  # (language, name) the editors gave it


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a digest: a new story under a topic, or a correction of one sent before
    (then ``previous_title`` is its title before the change, ``changed_at`` when)."""

    kind: str  # "new" or "correction"
    story: Story
    topic: Topic
    previous_title: str | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EditionInfo:
    """The edition a digest belongs to; ``id`` is None for one never saved (a preview)."""

    id: int | None
    kind: str  # the template: "digest" or "alert"
    frequency: str | None
    cutoff_at: datetime
    # The editor's note of the edition (plain text), the same in every digest of it: the
    # digest cache is per edition, so the note costs nothing per reader.
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DigestContent:
    """What one content key of an edition says, in the order the email shows it.

    ``entries`` is None when the loader was told the renderer holds this digest rendered at
    this ``version`` already (its items are then not read); ``article_ids`` are what the
    version was computed from."""

    edition: EditionInfo
    content_key: str
    version: str
    entries: tuple[Entry, ...] | None
    article_ids: tuple[int, ...] = ()
    shared: bool = False  # the planner found a second reader for it (edition_digests.shared)
    locale: str = ""  # the language of the email's own words; "" is the site's

    @property
    def cache_key(self) -> tuple[Any, ...]:
        # The cutoff guards against a reused edition id (SQLite reuses rowids after deletes);
        # the version makes an article edited mid-edition render afresh, so what a reader
        # gets is the article as it was when their delivery was claimed (or newer).
        return (self.edition.id, self.edition.cutoff_at.isoformat(), self.content_key,
                self.version)


# Articles of the last weeks, a few hundred bytes each; a topic's stories as each
# combination of topics splits them.
ITEM_CACHE = 4096
SECTION_CACHE = 4096


class Contexts:
    """Template contexts of digests, with the article and section dicts interned."""

    def __init__(self, *, timezone: str, base_url: str, lead_stories: int | None,
                 common: dict[str, Any], click_tracking: str = "off",
                 click_reader: str = "", language: str = "en") -> None:
        self.tz = ZoneInfo(timezone)
        self.language = language  # the site's: a story or digest that names none is in it
        # Story links through /r/ (click_links): minted once per edition × story × topic and
        # kept here, so the fragments holding them are shared by every digest of the edition.
        # In reader mode each link ends in ``click_reader``, the per-reader placeholder.
        self.click_tracking = click_tracking
        self.click_reader = click_reader
        self.links = FIFO(ITEM_CACHE)
        self.base_url = base_url
        self.lead_stories = lead_stories
        self.common = common
        self.items = FIFO(ITEM_CACHE)
        self.sections = FIFO(SECTION_CACHE)
        self.dates = FIFO(64)  # edition cutoffs × languages
        # The stories met lately by (id, updated_at), so the loader fetches only the rows of
        # articles new or changed since (every batch of an edition names the same few
        # hundred): as many as the items.
        self.stories = FIFO(ITEM_CACHE)

    def of(self, content: DigestContent) -> dict[str, Any]:
        if content.entries is None:
            raise LookupError(f"digest {content.content_key!r} was not loaded (only its "
                              "version was): load it again without the renderer's hint")
        sections: list[tuple[Topic, list[Record]]] = []
        corrections: list[Record] = []
        edition = content.edition
        fixed_topics: list[Topic] = []
        for entry in content.entries:
            item = self._item(entry.story, self._link(edition.id, entry.story, entry.topic))
            if entry.kind == "correction":
                changed_at = entry.changed_at or entry.story.updated_at
                previous = entry.previous_title
                fixed_topics.append(entry.topic)
                corrections.append(Record(
                    item, topic=self._topic(entry.topic, item["lang"]),
                    updated_label=self._when(changed_at, item["lang"]),
                    previous_title=strip_controls(previous)
                    if previous and previous != entry.story.title else None))
                continue
            if not sections or sections[-1][0].id != entry.topic.id \
                    or sections[-1][1][0]["lang"] != item["lang"]:
                sections.append((entry.topic, []))
            sections[-1][1].append(item)
        locale = content.locale or self.language
        built = [self._section(topic, items) for topic, items in sections]
        # The email's own words are in the reader's language (``locale``: every template
        # function reads it); each part, section and story in its own (see _parts).
        archive = f"{self.base_url}/editions/{edition.id}" if edition.id is not None \
            else self.base_url  # a preview: the next edition has no archive page yet
        return {
            **self.common,
            "edition": {"id": edition.id, "kind": edition.kind, "frequency": edition.frequency,
                        "date_label": self._date(edition.cutoff_at, locale)},
            "archive_url": archive,
            "note": edition.note,
            "article_count": len(content.entries) - len(corrections),
            "lead_stories": self.lead_stories,
            "sections": built,
            "corrections": corrections,
            "locale": locale,
            # The topics as the email's own sentences name them (in its language, each once
            # although a bilingual digest has a section on it per language).
            "topic_names": self._names([t for t, _ in sections], locale),
            "followed_names": self._names([t for t, _ in sections]
                                          + fixed_topics, locale),
            # A bilingual digest: its parts in the reader's order of languages, each headed by
            # its language's name (one part: no heading, the sections run as before).
            "languages": self._parts(built),
        }

    def _link(self, edition_id: int | None, story: Story, topic: Topic) -> str:
        """Where the story's links point: /r/ for a saved edition with click counting on,
        else the story itself (a preview has no edition to count for)."""
        if edition_id is None or self.click_tracking == "off":
            return story.url
        key = (edition_id, story.id, topic.id)
        link = self.links.get(key)
        if link is None:
            link = self.links.put(key, click_links.story_link(
                self.base_url, edition_id, story.id, topic.id) + self.click_reader)
        return link

    def _names(self, topics: list[Topic], locale: str) -> list[str]:
        names: dict[int, str] = {}
        for topic in topics:
            names.setdefault(topic.id,
                             strip_controls(dict(topic.names).get(locale) or topic.name))
        return list(names.values())

    def _parts(self, sections: list[Record]) -> list[Record]:
        parts: list[tuple[str, list[Record]]] = []
        for section in sections:
            if not parts or parts[-1][0] != section["lang"]:
                parts.append((section["lang"], []))
            parts[-1][1].append(section)
        return [Record(heading=Record(name=i18n.language_name(lang)), sections=tuple(group),
                       lang=lang) for lang, group in parts]

    def _date(self, at: datetime, lang: str) -> str:
        # Every digest of an edition carries the same date: written once per language.
        key = (at, lang)
        label = self.dates.get(key)
        if label is None:
            label = self.dates.put(key, at.astimezone(self.tz).strftime("%-d %B %Y")
                                   if lang == "en"  # as before languages, to the letter
                                   else i18n.format_date(at, lang, "long", tz=self.tz))
        return label

    def _when(self, at: datetime, lang: str) -> str:
        """A story's time, in the language of the story it labels."""
        if lang == "en":
            return at.astimezone(self.tz).strftime("%-d %b %Y, %H:%M")
        return i18n.format_datetime(at, lang, "medium", tz=self.tz)

    def _item(self, story: Story, link: str) -> Record:
        """An article as templates see it; the same Record for every digest that carries
        it, so a digest costs a lookup per article, not a strftime."""
        # By (id, updated_at), as the database names an article's version: cheaper to hash
        # than the whole story; and by its link, which names the edition and topic when
        # clicks are counted.
        key = (story.id, story.updated_at, link)
        item = self.items.get(key)
        if item is None:
            self.stories.put(key[:2], story)
            # Stripped here, not only by the renderer's finalize: a translated sentence takes
            # its values ("By %(author)s") past finalize (rows stored before the guard).
            item = self.items.put(key, Record(
                title=strip_controls(story.title), url=link,
                summary=strip_controls(story.summary),
                author=strip_controls(story.author) if story.author else story.author,
                image_url=story.image_url,
                published_label=self._when(story.published_at, story.lang or self.language),
                lang=story.lang or self.language))
        return item

    @staticmethod
    def _topic(topic: Topic, lang: str = "") -> Record:
        # Named in the language of the stories under it (the console's per-language names).
        return Record(slug=topic.slug,
                      name=strip_controls(dict(topic.names).get(lang) or topic.name))

    def _section(self, topic: Topic, items: list[Record]) -> Record:
        """A topic's part of a digest; the same Record for every digest that has the same
        stories under it, so the fragment renderer finds it by its stored hash."""
        key = (topic.id, topic.slug, topic.name, topic.names, *items)  # items hash once
        section = self.sections.get(key)
        if section is None:
            # In its stories' language (a section is one language's stories on one topic).
            lang = items[0]["lang"]
            section = self.sections.put(key, Record(
                topic=self._topic(topic, lang), articles=tuple(items), lang=lang))
        return section

