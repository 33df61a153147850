"""Story links (``/r/{token}``) and the click figures of the admin API.

A story link answers 302 to the article row's URL whether the request is counted or not:
a scanner gets the same answer as a reader, it only is not counted (insight.clicks).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import click_links
from newsletter.config import get_settings
from newsletter.errors import EditionNotFound, InvalidToken
from newsletter.insight import click_figures, clicks
from newsletter.models import Edition, utcnow
from newsletter.web.deps import Editor, RowId, SessionDep, message

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", dependencies=[Editor])


def _not_found(request: Request) -> HTMLResponse:
    return message(request, "This link is not valid",
                   "It may have been copied incompletely from the email.", status=404)


@router.api_route("/r/{token}", methods=["GET", "HEAD"])
@router.api_route("/r/{token}/{reader}", methods=["GET", "HEAD"])
def follow_story(request: Request, token: str, session: SessionDep,
                 reader: str | None = None) -> Response:
    """Send the reader on to the story, counting the click if a reader made it."""
    try:
        target = click_links.read(token, reader)
    except InvalidToken:
        return _not_found(request)
    found, url = clicks.destination(session, target)
    if not found or not clicks.delivery_matches(session, target):
        return _not_found(request)
    if url is None:
        # Withdrawn: the newsroom took it down, so we neither send readers to it nor count.
        return message(request, "This story has been withdrawn",
                       "The newsroom has taken this story down since the email was sent.",
                       status=410)
    agent = request.headers.get("user-agent")
    if request.method == "GET" and not clicks.is_scanner(agent):
        sent_at = clicks.sent_at(session, target) if clicks.is_program(agent) else None
        settings = get_settings()
        if clicks.counts(request.method, agent, sent_at, utcnow(),
                         settings.click_scanner_window_seconds):
            clicks.record(target)
    # Never cached: a cached redirect would be a click nobody counts.
    return RedirectResponse(url, 302, headers={"Cache-Control": "no-store"})


@api_router.get("/editions/{edition_id}/clicks")
def edition_clicks(edition_id: RowId, session: SessionDep) -> dict[str, Any]:
    """Clicks per story and per topic for an edition (and the readers' share, reader mode)."""
    if session.get(Edition, edition_id) is None:
        raise EditionNotFound(f"no edition {edition_id}")
    return click_figures.edition_clicks(session, edition_id)
