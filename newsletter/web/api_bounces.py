"""Admin API: a bounce or complaint report posted by a mail relay or an inbound-mail webhook."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.orm import Session

from newsletter import audit
from newsletter.accounts.actors import Actor
from newsletter.readers import bounces
from newsletter.web.deps import Admin, AdminActor, SessionDep

# Admins only: what it reads suppresses readers.
router = APIRouter(prefix="/api/bounces", dependencies=[Admin])

MAX_BYTES = 10 * 1024 * 1024
# A raw message is what relays post; anything else (JSON from a misconfigured hook) is
# refused rather than counted as an ignored message.
ACCEPTED_TYPES = ("message/rfc822", "text/plain", "application/octet-stream", "")
# Reports are read (CPU) and recorded on threads of their own, two at a time: a burst of
# posted reports then waits its turn here instead of taking the shared pool that runs the
# pages' synchronous work, and at most two threads compete with the event loop for the
# interpreter. Threads rather than processes: reading is bounded to milliseconds
# (bounce_reports reads at most 128 KB in linear time), and the database work that follows
# needs the request's session.
_READERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bounce-reader")


@router.post("", responses={413: {"description": "over 10 MB"},
                            415: {"description": "not a raw message"},
                            422: {"description": "empty body"}})
async def post_bounce(request: Request, session: SessionDep,
                      actor: AdminActor) -> dict[str, int]:
    """Ingest one raw message (the body); answers what it found and whom it suppressed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise HTTPException(415, "post the raw message as message/rfc822 or text/plain")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise HTTPException(413, f"message over {MAX_BYTES // (1024 * 1024)} MB")
    body = bytearray()
    async for chunk in request.stream():  # a lying or absent Content-Length is capped too
        body += chunk
        if len(body) > MAX_BYTES:
            raise HTTPException(413, f"message over {MAX_BYTES // (1024 * 1024)} MB")
    if not body.strip():
        raise HTTPException(422, "empty body: post the raw bounce or complaint message")
    result = await asyncio.get_running_loop().run_in_executor(
        _READERS, _ingest, session, bytes(body), actor)
    return result.as_dict()


def _ingest(session: Session, raw: bytes, actor: Actor) -> bounces.IngestResult:
    result = bounces.ingest(session, raw, source="webhook")
    if result.suppressed:
        audit.record(session, actor.name, "suppression.add", "suppressions",
                     {"suppressed": result.suppressed, "hard": result.hard,
                      "complaints": result.complaints, "source": "webhook"}, actor.ip)
    session.commit()
    return result
