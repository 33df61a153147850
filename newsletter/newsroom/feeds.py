"""Feeds in: RSS 2.0 and Atom entries become articles, once each (feedparser).

An entry is known by its feed's identity and its id/guid (``external_id``), or by its link,
so reading a feed again updates what changed and duplicates nothing. Categories become
tags; an entry without one takes the feed's default tag or is skipped, with the reason
counted. Feed text is never trusted as HTML: titles and summaries come out as plain text. An entry's
language is the feed's xml:lang (Atom) or <language> (RSS), else the site's.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import feedparser
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.config import get_settings
from newsletter.models import FeedPoll, utcnow
from newsletter.newsroom import articles
from newsletter.newsroom.fetch import FeedError, Guard, fetch

__all__ = ["FeedError", "FeedSource", "ImportResult", "entries", "import_feed", "last_polls",
           "poll", "to_text"]

log = logging.getLogger(__name__)

MAX_REASONS = 50  # skip reasons kept per import: enough to act on, bounded for a huge feed
SUMMARY_MAX = 5000  # ArticleIn's limit


@dataclass
class ImportResult:
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)  # why entries were skipped

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeedSource:
    """A configured feed: ``"URL"`` or ``"URL Default Tag"`` (URLs hold no spaces)."""

    location: str
    default_tag: str | None = None

    @classmethod
    def parse(cls, spec: str) -> FeedSource:
        location, _, tag = spec.strip().partition(" ")
        return cls(location, " ".join(tag.split()) or None)


# ---------------------------------------------------------------- reading

def _is_url(source: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", source) is not None and "://" in source


def read(source: str, guard: Guard | None = None) -> tuple[str, bytes]:
    """The feed's bytes and the URL they came from (a path's URL is ``file://…``).

    A URL goes through the SSRF guard (which refuses ``file:``, ``ftp:`` …); a local path
    is for the operator (CLI, configuration) and must never be taken from a web request.
    """
    guard = guard or Guard.from_settings()
    if _is_url(source):
        fetched = fetch(source, guard)
        return fetched.url, fetched.content
    path = Path(source).expanduser()
    try:
        if path.stat().st_size > guard.max_bytes:
            raise FeedError(f"{source}: over the {guard.max_bytes}-byte limit")
        return path.resolve().as_uri(), path.read_bytes()
    except OSError as exc:
        raise FeedError(f"cannot read {source}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- parsing

class _Text(HTMLParser):
    SKIP = {"script", "style", "template", "noscript", "iframe", "object", "svg", "head"}
    BREAK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BREAK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BREAK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def to_text(html: str | None) -> str:
    """Feed HTML as one line of plain text: tags dropped, scripts and styles with their
    content, entities decoded, whitespace collapsed."""
    parser = _Text()
    parser.feed(html or "")
    parser.close()
    return " ".join("".join(parser.parts).split())


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"


def _when(entry: Any) -> datetime | None:
    # feedparser normalises every date format it knows to a UTC struct_time.
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return datetime(*parsed[:6], tzinfo=UTC) if parsed else None


def _image(entry: Any) -> str | None:
    candidates = [e.get("href") for e in entry.get("enclosures", [])
                  if str(e.get("type", "")).startswith("image/")]
    candidates += [m.get("url") for m in entry.get("media_thumbnail", [])]
    candidates += [m.get("url") for m in entry.get("media_content", [])
                   if m.get("medium") == "image" or str(m.get("type", "")).startswith("image/")]
    return next((c for c in candidates if c and re.match(r"^https?://", c)), None)


def _language(entry: Any, feed: Any) -> str | None:
    """The entry's language as its feed declares it: the xml:lang in scope on its title
    (Atom: the title's, the entry's or the feed's), else the channel's <language> (RSS);
    None leaves it to the site's LANGUAGE. articles.validate checks the tag."""
    tag = (entry.get("title_detail") or {}).get("language") or entry.get("language") \
        or feed.get("language")
    return tag.strip()[:64] if isinstance(tag, str) and tag.strip() else None


def _identity(parsed: Any, url: str) -> str:
    """Prefix for entry ids: the feed's own name for itself, so a copy on disk and the
    feed fetched over HTTP are one feed, while two feeds' guids cannot collide."""
    feed = parsed.feed
    own = next((link.get("href") for link in feed.get("links", []) if link.get("rel") == "self"),
               None)
    name = own or feed.get("id") or feed.get("link") or url
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def entries(data: bytes, url: str, default_tag: str | None = None,
            result: ImportResult | None = None) -> list[dict[str, Any]]:
    """Article payloads (for articles.upsert) from a feed document; skips go to ``result``."""
    result = result if result is not None else ImportResult(url)
    # Always a stream: given a string (or bytes!) feedparser would try it as a URL to fetch
    # or a file to open — past the SSRF guard, and a body of "/etc/passwd" would be read.
    parsed = feedparser.parse(io.BytesIO(data), response_headers={"content-location": url}
                              if url.startswith("http") else None, sanitize_html=True)
    if not parsed.version and not parsed.entries:
        why = getattr(parsed.get("bozo_exception"), "args", [""])[0] if parsed.bozo else ""
        raise FeedError(f"{url}: not an RSS or Atom feed{f' ({why})' if why else ''}")
    prefix = _identity(parsed, url)
    payloads = []
    for entry in parsed.entries:
        link = (entry.get("link") or "").strip()
        title = to_text(entry.get("title"))
        label = link or title or entry.get("id") or "an entry"
        if not re.match(r"^https?://", link):
            result.skip(f"{label}: no http(s) link")
            continue
        if not title:
            result.skip(f"{label}: no title")
            continue
        tags = [to_text(t.get("term")) for t in entry.get("tags", [])]
        tags = list(dict.fromkeys(t for t in tags if t and len(t) <= 128))[:20]
        if not tags and default_tag:
            tags = [default_tag]
        if not tags:
            result.skip(f"{label}: no category and the feed has no default tag")
            continue
        body = entry.get("summary") or next(
            (c.get("value") for c in entry.get("content", []) if c.get("value")), "")
        guid = entry.get("id") or link
        if len(guid) > 200:
            guid = hashlib.sha256(guid.encode()).hexdigest()
        author = to_text(entry.get("author"))[:255] or None
        payloads.append({"lang": _language(entry, parsed.feed),
            "url": link, "title": _clip(title, 500), "summary": _clip(to_text(body), SUMMARY_MAX),
            "author": author, "published_at": _when(entry), "tags": tags,
            "image_url": _image(entry), "external_id": f"feed:{prefix}:{guid}",
        })
    return payloads


# ---------------------------------------------------------------- importing

def import_feed(session: Session, source: str, *, default_tag: str | None = None,
                guard: Guard | None = None) -> ImportResult:
    """Read a feed (URL or local path) and publish or update its entries."""
    url, data = read(source, guard)
    result = ImportResult(source)
    for payload in entries(data, url, default_tag, result):
        try:
            with session.begin_nested():  # a bad entry is skipped, not the whole feed
                outcome = articles.upsert(session, payload).outcome
        except articles.ArticleError as exc:
            result.skip(f"{payload['url']}: {exc}")
            continue
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result


def poll(session: Session) -> dict[str, ImportResult | str]:
    """Import every configured feed, committing each with what its poll did (``feed_polls``,
    for the console); a failing feed is logged, recorded and skipped."""
    results: dict[str, ImportResult | str] = {}
    for spec in get_settings().feeds:
        source = FeedSource.parse(spec)
        try:
            result = import_feed(session, source.location, default_tag=source.default_tag)
            _record_poll(session, source.location, result, None)
            session.commit()
        except Exception as exc:  # one broken feed (or bad entry batch) must not stop the rest
            session.rollback()
            log.warning("feed %s failed: %s", source.location, exc,
                        exc_info=not isinstance(exc, FeedError))
            results[source.location] = f"failed: {exc}"
            _record_poll(session, source.location, None, str(exc))
            session.commit()
            continue
        log.info("feed %s: %d created, %d updated, %d unchanged, %d skipped", source.location,
                 result.created, result.updated, result.unchanged, result.skipped)
        results[source.location] = result
    return results


def _record_poll(session: Session, location: str, result: ImportResult | None,
                 error: str | None) -> None:
    row = session.scalar(select(FeedPoll).where(FeedPoll.location == location))
    if row is None:
        row = FeedPoll(location=location)
        session.add(row)
    row.polled_at, row.ok = utcnow(), error is None
    row.result = result.as_dict() if result else {}
    row.error = error[:500] if error else None
    session.flush()


def last_polls(session: Session) -> dict[str, FeedPoll]:
    """What the last poll of each feed did, by feed location (feeds never polled are absent)."""
    return {row.location: row for row in session.scalars(select(FeedPoll))}
