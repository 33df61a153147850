"""Admin API: the audit log as JSON, newest first (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from newsletter import audit
from newsletter.web.deps import Admin, SessionDep

router = APIRouter(prefix="/api/audit", dependencies=[Admin])


@router.get("")
def audit_log(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: Annotated[str, Query(max_length=320)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
) -> list[dict[str, Any]]:
    """The latest entries (``at``, ``actor``, ``action``, ``target``, ``details``, ``ip``)."""
    where = audit.Filter(actor=actor, action=action)
    return [audit.to_dict(entry) for entry in audit.entries(session, where, limit)]
