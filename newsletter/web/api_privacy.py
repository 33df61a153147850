"""Admin API for a reader's data rights: export (GDPR art. 15) and erasure (art. 17)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from newsletter.readers import privacy
from newsletter.web.deps import Editor, SessionDep

router = APIRouter(prefix="/api/subscribers", dependencies=[Editor])


@router.get("/{email}")
def export_subscriber(email: str, session: SessionDep) -> dict[str, Any]:
    """Everything held about one reader."""
    return privacy.export(session, email)


@router.delete("/{email}")
def erase_subscriber(email: str, session: SessionDep) -> dict[str, str]:
    """Delete the reader, keeping only a hashed suppression entry."""
    privacy.erase(session, email)
    session.commit()
    return {"status": "erased"}
