"""/admin: the dashboard. Editions in progress (their progress polled every 2 s by htmx),
the last editions, readers and their 30-day trend, unsubscribes and bounces per edition."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from newsletter.config import get_settings
from newsletter.editions import reports
from newsletter.insight import click_figures, growth
from newsletter.readers import figures
from newsletter.states import EditionStatus
from newsletter.web.console.auth import CurrentEditor, console_router, render
from newsletter.web.deps import SessionDep

router = console_router()

# Editions a worker is still planning or sending, or that wait for an editor (paused).
IN_PROGRESS = (EditionStatus.PLANNING, EditionStatus.SENDING, EditionStatus.PAUSED)
# How many in-progress editions the dashboard follows at once, and how many last ones it lists.
FOLLOWED = 5
LATEST = 8
TREND_DAYS = 30
# "Top stories of the week": the editions sent in the last seven days.
TOP_STORIES_DAYS = 7


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep, user: CurrentEditor) -> HTMLResponse:
    settings = get_settings()
    latest = reports.recent(session, LATEST)
    sent = [r for r in latest if not r["dry_run"]]
    bounced = reports.bounces(session, [r["id"] for r in sent])
    readers, trend = _reader_figures(session, settings.timezone)
    return render(request, user, "dashboard.html", section="home",
                  in_progress=reports.recent(session, FOLLOWED, status=IN_PROGRESS),
                  latest=latest, readers=readers, trend=trend,
                  chart_data=_chart_data(trend, sent, bounced), timezone=settings.timezone,
                  top_stories=click_figures.top_stories(session, TOP_STORIES_DAYS),
                  click_tracking=settings.click_tracking,
                  topic_growth=growth.for_dashboard(session, settings.timezone))


# Readers per status and their trend read every reader and a month of the consent ledger
# (~0.1 s at 100,000 readers): the figures of the last half minute serve every editor.
READER_FIGURES_TTL_S = 30.0
_reader_cache: dict[str, tuple[float, Any]] = {}


def _reader_figures(session, timezone: str) -> tuple[dict[str, int], list[figures.Day]]:
    held = _reader_cache.get(timezone)
    if held is not None and time.monotonic() - held[0] < READER_FIGURES_TTL_S:
        return held[1]
    readers = figures.by_status(session)
    trend = figures.trend(session, TREND_DAYS, timezone, active=readers["active"])
    _reader_cache[timezone] = (time.monotonic(), (readers, trend))
    return readers, trend


@router.get("/progress", response_class=HTMLResponse)
def progress(request: Request, session: SessionDep, user: CurrentEditor) -> HTMLResponse:
    """The in-progress block alone, for htmx to swap in every 2 s (it stops polling once
    nothing is in progress: the block it returns then has no trigger)."""
    return render(request, user, "_in_progress.html",
                  in_progress=reports.recent(session, FOLLOWED, status=IN_PROGRESS))


def _chart_data(trend: list[figures.Day], sent: list[dict[str, Any]],
                bounced: dict[int, dict[str, int]]) -> dict[str, Any]:
    """What static/console/charts.js draws (read from a JSON block: the CSP runs no inline
    script); the page shows the same figures as tables."""
    oldest_first = sent[::-1]
    return {
        "trend": {"labels": [d.day.strftime("%-d %b") for d in trend],
                  "active": [d.active for d in trend], "joined": [d.joined for d in trend],
                  "left": [d.left for d in trend]},
        "editions": {"labels": [f"#{r['id']}" for r in oldest_first],
                     "unsubscribed": [r["counts"]["unsubscribed"] for r in oldest_first],
                     "bounced": [sum(bounced.get(r["id"], {}).values()) for r in oldest_first]},
    }
