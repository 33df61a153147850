"""/admin/audit: the audit log, newest first, filtered by actor, action and date."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from newsletter import audit
from newsletter.config import get_settings
from newsletter.web.console.auth import CurrentEditor, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import SessionDep

router = console_router()
Text = Annotated[str, Query(max_length=320)]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: SessionDep, user: CurrentEditor,
               actor: Text = "", action: Text = "", since: Text = "", until: Text = "",
               page: PageNumber = 1) -> HTMLResponse:
    errors: dict[str, str] = {}
    start = _day(since, "since", errors)
    end = _day(until, "until", errors)
    if start and end and end < start:
        errors["until"] = "The end date is before the start date."
    where = audit.Filter(actor=actor.strip(), action=action.strip(),
                         since=start and _midnight(start),
                         until=end and _midnight(end + timedelta(days=1)))
    if errors:  # show the form with what was typed, and no misleading list
        entries, total = [], 0
    else:
        total = audit.count(session, where)
    pages = Pages(page, total, params=(("actor", actor), ("action", action), ("since", since),
                                       ("until", until)))
    if not errors:
        entries = audit.entries(session, where, pages.per_page, pages.offset)
    return render(request, user, "audit.html", 422 if errors else 200, section="audit",
                  entries=entries, pages=pages, errors=errors, actors=audit.actors(session),
                  actions=audit.ACTIONS, form={"actor": actor, "action": action,
                                               "since": since, "until": until},
                  timezone=get_settings().timezone)


def _day(value: str, field: str, errors: dict[str, str]) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        errors[field] = f"“{value}” is not a date: use the date picker, or YYYY-MM-DD."
        return None


def _midnight(day: date) -> datetime:
    """The start of ``day`` in the site's time zone, as UTC."""
    zone = ZoneInfo(get_settings().timezone)
    return datetime.combine(day, time(0), zone).astimezone(UTC)
