"""Admin API for a reader's data rights: export (GDPR art. 15) and erasure (art. 17).
Admins only: an editor's role does not reach readers' data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from newsletter import audit
from newsletter.readers import privacy
from newsletter.web.deps import Admin, AdminActor, SessionDep

router = APIRouter(prefix="/api/subscribers", dependencies=[Admin])


@router.get("/{email}")
def export_subscriber(email: str, session: SessionDep) -> dict[str, Any]:
    """Everything held about one reader."""
    return privacy.export(session, email)


@router.delete("/{email}")
def erase_subscriber(email: str, session: SessionDep, actor: AdminActor) -> dict[str, str]:
    """Delete the reader, keeping only a hashed suppression entry."""
    reader_id = privacy.erase(session, email)
    # By id only: the log outlives the reader and must hold nothing erasure would remove.
    audit.record(session, actor.name, "reader.erase", f"reader:{reader_id}", {}, actor.ip)
    session.commit()
    return {"status": "erased"}
