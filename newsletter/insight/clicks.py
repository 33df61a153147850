"""Click counting: where a story link leads, whether a request is a reader, and the count.

A click is answered from memory where it can be (the article's URL, kept a few seconds) and
counted in this process's :class:`ClickBuffer`, which a thread writes to ``story_clicks``
every ``CLICK_FLUSH_SECONDS`` in one statement. The redirect never waits for a write; a
process killed outright loses at most the clicks of one flush interval (a clean stop
writes what it holds; a failed write keeps the counts for the next try).

The tokens themselves are minted and read in the floor (newsletter/click_links.py), since
the renderer mints them too; the figures editors see are in :mod:`newsletter.insight.figures`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import db, sql
from newsletter.click_links import ClickTarget
from newsletter.config import get_settings
from newsletter.models import Article, Delivery, Edition, utcnow

log = logging.getLogger(__name__)

# Link scanners and previewers: they fetch every link of a message (at the receiving mail
# server, or to draw a preview) and would count as readers. Lower-case substrings of the
# User-Agent header, matched anywhere in it. Sources: Microsoft's Office link-check agents
# ("Microsoft Office Existence Discovery", "ms-office", documented in Microsoft's Office
# protocol docs [MS-OFFDI]) and Bing's link preview ("BingPreview"); Google's Gmail image and
# link proxy ("GoogleImageProxy", "Google-Safety"); the crawlers that draw chat and social
# previews, each documented by its owner: Slack ("Slackbot-LinkExpanding", api.slack.com/robots),
# Facebook/iMessage ("facebookexternalhit", developers.facebook.com/docs/sharing/webmasters/
# web-crawlers), Twitter ("Twitterbot"), LinkedIn ("LinkedInBot"), Discord ("Discordbot"),
# Telegram ("TelegramBot"), Skype ("SkypeUriPreview"), WhatsApp ("WhatsApp/"); security
# gateways that name themselves (Barracuda, Mimecast, Proofpoint); and the generic words
# crawlers put in their agent ("bot", "spider", "crawl", "preview", "scan", headless browsers).
SCANNER_AGENTS = (
    "microsoft office existence discovery", "ms-office", "bingpreview",
    "googleimageproxy", "google-safety",
    "slackbot", "facebookexternalhit", "twitterbot", "linkedinbot", "discordbot", "telegrambot",
    "skypeuripreview", "whatsapp/",
    "barracuda", "mimecast", "proofpoint",
    "bot", "spider", "crawl", "preview", "scan", "headlesschrome", "phantomjs",
)
# Agents of programs rather than mail apps or browsers: an HTTP library asks, not a person.
# With no agent at all, they are what a data-centre scanner looks like (docs/operations.md).
PROGRAM_AGENTS = (
    "python-requests", "python-urllib", "python-httpx", "aiohttp", "curl/", "wget/",
    "go-http-client", "java/", "okhttp", "apache-httpclient", "libwww-perl", "node-fetch",
    "axios/", "undici",
)

# How long an article's URL (and whether it is still published) is kept in memory: a
# breaking story's clicks come in thousands a minute and each would read the same row. A
# withdrawn story stops redirecting at most this long after its withdrawal.
DESTINATION_SECONDS = 10.0


def is_scanner(user_agent: str | None) -> bool:
    agent = (user_agent or "").lower()
    return any(s in agent for s in SCANNER_AGENTS)


def is_program(user_agent: str | None) -> bool:
    agent = (user_agent or "").strip().lower()
    return not agent or any(s in agent for s in PROGRAM_AGENTS)


def counts(method: str, user_agent: str | None, sent_at: datetime | None, now: datetime,
           window_s: float) -> bool:
    """Whether a request for a story link is a reader's click (the scanner rule)."""
    if method != "GET" or is_scanner(user_agent):
        return False
    if not is_program(user_agent):
        return True
    # A program, or nobody named: a scanner when it comes right after the email went out.
    return sent_at is None or now - sent_at > timedelta(seconds=window_s)


def sent_at(session: Session, target: ClickTarget) -> datetime | None:
    """When the email behind a click went out, as well as we know: the delivery's sent_at in
    reader mode; in aggregate mode the end of the edition's sending (now while it sends)."""
    if target.delivery_id is not None:
        return session.scalar(select(Delivery.sent_at).where(Delivery.id == target.delivery_id))
    row = session.execute(select(Edition.status, Edition.finished_at)
                          .where(Edition.id == target.edition_id)).first()
    if row is None:
        return None
    return utcnow() if row.status == "sending" else row.finished_at


@dataclass(frozen=True, slots=True)
class Destination:
    url: str | None  # None: withdrawn
    until: float


_destinations: dict[int, Destination] = {}


def destination(session: Session, target: ClickTarget) -> tuple[bool, str | None]:
    """(found, url) for a story link: (False, None) if the link names nothing that exists,
    (True, None) if the story was withdrawn, else the URL of the article's row (never one
    from the link: nobody can make us redirect elsewhere)."""
    now = time.monotonic()
    held = _destinations.get(target.article_id)
    if held is None or held.until < now:
        row = session.execute(select(Article.url, Article.status)
                              .where(Article.id == target.article_id)).first()
        if row is None:
            return False, None
        if not row.url.lower().startswith(("https://", "http://")):
            return False, None  # publishing refuses such URLs; a row from before never leads on
        held = Destination(row.url if row.status == "published" else None,
                           now + DESTINATION_SECONDS)
        if len(_destinations) > 50_000:  # old editions' stories: start afresh
            _destinations.clear()
        _destinations[target.article_id] = held
    return True, held.url


def delivery_matches(session: Session, target: ClickTarget) -> bool:
    """A reader-mode link's delivery belongs to the edition its story token names."""
    if target.delivery_id is None:
        return True
    edition = session.scalar(select(Delivery.edition_id).where(Delivery.id == target.delivery_id))
    return edition == target.edition_id


class ClickBuffer:
    """Clicks counted in memory and written every ``interval`` seconds by one thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._counts: Counter[tuple[int, int, int, int]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="click-flush", daemon=True)
        self._thread.start()

    def add(self, target: ClickTarget) -> None:
        key = (target.edition_id, target.article_id, target.topic_id, target.delivery_id or 0)
        with self._lock:
            self._counts[key] += 1

    def flush(self) -> int:
        """Write what is held; on failure keep it for the next flush. Returns clicks written."""
        with self._lock:
            held, self._counts = self._counts, Counter()
        if not held:
            return 0
        now = utcnow()
        rows = [{"edition_id": e, "article_id": a, "topic_id": t, "delivery_id": d,
                 "clicks": n, "last_at": now} for (e, a, t, d), n in held.items()]
        try:
            with db.session_scope() as session:
                sql.add_story_clicks(session, rows)
        except Exception:
            log.exception("writing %d click counts failed; kept for the next flush", len(rows))
            with self._lock:
                self._counts.update(held)
            return 0
        return sum(held.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


_buffer: ClickBuffer | None = None
_buffer_lock = threading.Lock()


def record(target: ClickTarget) -> None:
    """Count one click (written within CLICK_FLUSH_SECONDS)."""
    global _buffer
    if _buffer is None:
        with _buffer_lock:
            if _buffer is None:
                _buffer = ClickBuffer(get_settings().click_flush_seconds)
    _buffer.add(target)


def flush() -> int:
    """Write the clicks this process holds now (a clean stop; tests)."""
    return _buffer.flush() if _buffer is not None else 0


def stop() -> None:
    """Write what is held and stop the flushing thread (the web app's shutdown)."""
    global _buffer
    with _buffer_lock:
        if _buffer is not None:
            _buffer.close()
            _buffer = None
