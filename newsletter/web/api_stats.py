"""Admin API: figures over time for editors (editors and admins): topic growth."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from newsletter.config import get_settings
from newsletter.insight import growth
from newsletter.web.deps import Editor, SessionDep

router = APIRouter(prefix="/api/stats", dependencies=[Editor])


@router.get("/topics")
def topic_growth(session: SessionDep,
                 days: Annotated[int, Query(ge=1, le=growth.MAX_DAYS)] = 30) -> dict[str, Any]:
    """Per topic: follows gained, lost and net over the last ``days`` local days (today
    included), its active followers now, and the per-day series (oldest first); the
    biggest net growth first. A follow is an active reader following a live topic."""
    timezone = get_settings().timezone
    return {"days": days, "timezone": timezone,
            "topics": [t.as_dict() for t in growth.topic_growth(session, days, timezone)]}
