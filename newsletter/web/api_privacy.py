"""Admin API for a reader's data rights: export (GDPR art. 15) and erasure (art. 17)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from newsletter import privacy
from newsletter.web.deps import Editor, SessionDep

router = APIRouter(prefix="/api/subscribers", dependencies=[Editor])


@router.get("/{email}")
def export_subscriber(email: str, session: SessionDep) -> dict[str, Any]:
    """Everything held about one reader."""
    try:
        return privacy.export(session, email)
    except privacy.ReaderNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.delete("/{email}")
def erase_subscriber(email: str, session: SessionDep) -> dict[str, str]:
    """Delete the reader, keeping only a hashed suppression entry."""
    try:
        privacy.erase(session, email)
    except privacy.ReaderNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    session.commit()
    return {"status": "erased"}
