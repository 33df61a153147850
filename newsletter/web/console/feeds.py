"""/admin/feeds (admins): the feeds beat polls (NEWSLETTER_FEEDS), each one's default tag
and what its last poll did (newsroom.feeds records it)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from newsletter.config import get_settings
from newsletter.newsroom import feeds
from newsletter.web.console.auth import CurrentAdmin, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import SessionDep

router = console_router(admin_only=True)


@router.get("/feeds", response_class=HTMLResponse)
def feeds_page(request: Request, session: SessionDep, user: CurrentAdmin,
               page: PageNumber = 1) -> HTMLResponse:
    settings = get_settings()
    configured = [feeds.FeedSource.parse(spec) for spec in settings.feeds]
    pages = Pages(page, len(configured))
    shown = configured[pages.offset:pages.offset + pages.per_page]
    return render(request, user, "feeds.html", section="feeds", pages=pages, feeds=shown,
                  polls=feeds.last_polls(session), minutes=f"{settings.feed_poll_minutes:g}")
