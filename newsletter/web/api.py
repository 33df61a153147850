"""The admin API for editors (bearer token: ADMIN_TOKEN or an editor's API token).

Every route needs the editor role; importing readers needs admin. Each change is recorded
in the audit log with the caller (``token:NAME``) and their address.

Domain errors (newsletter/errors.py) are answered by the app's one handler with their
status and ``{"detail": message}``; the routes here only call and commit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from newsletter import audit
from newsletter.accounts.actors import Actor
from newsletter.editions import preview, reconcile, reports, withdrawal
from newsletter.editions import requests as editions
from newsletter.insight import attribution
from newsletter.newsroom import articles
from newsletter.readers import imports
from newsletter.web.deps import AdminActor, Editor, EditorActor, RowId, SessionDep

router = APIRouter(prefix="/api", dependencies=[Editor])


class EditionIn(BaseModel):
    frequency: Literal["daily", "weekly"]
    tags: list[str] | None = Field(default=None, max_length=50)
    dry_run: bool = False
    # The editor's note at the top of every digest (checked by editions.requests).
    note: str | None = Field(default=None, max_length=10_000)


@router.post("/articles", status_code=201)
def create_article(
    item: articles.ArticleIn, session: SessionDep, response: Response, actor: EditorActor,
) -> dict[str, Any]:
    done = articles.upsert(session, item.model_dump())
    article, created = done.article, done.outcome == "created"
    if done.outcome != "unchanged":  # the same article again changes nothing to record
        audit.record(session, actor.name, "article.publish", f"article:{article.id}",
                     {"title": article.title, "created": created}, actor.ip)
    session.commit()
    response.status_code = 201 if created else 200
    return articles.to_dict(article)


@router.delete("/articles/{article_id}")
def unpublish_article(article_id: RowId, session: SessionDep,
                      actor: EditorActor) -> dict[str, Any]:
    done = withdrawal.unpublish(session, article_id)
    audit.record(session, actor.name, "article.unpublish", f"article:{article_id}",
                 {"deliveries_changed": done.deliveries_changed}, actor.ip)
    session.commit()
    return {**articles.to_dict(done.article),
            "deliveries_changed": done.deliveries_changed,
            "deliveries_suppressed": done.deliveries_suppressed}


@router.post("/editions", status_code=202)
def create_edition(
    item: EditionIn, session: SessionDep, actor: EditorActor,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Request an edition; the same ``Idempotency-Key`` again returns the first one."""
    edition = editions.request(
        session, item.frequency, tags=item.tags, dry_run=item.dry_run, source="api",
        idempotency_key=idempotency_key, note=item.note,
    )
    audit.record(session, actor.name, "edition.send", f"edition:{edition.id}",
                 {"frequency": item.frequency, "tags": item.tags, "dry_run": item.dry_run,
                  "note": bool(edition.note)}, actor.ip)
    session.commit()
    return {"id": edition.id, "status": edition.status}


@router.get("/editions")
def recent_editions(session: SessionDep,
                    limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
    """The latest editions, newest first, with status and counts."""
    return reports.recent(session, limit)


class TestSendIn(BaseModel):
    to: str = Field(max_length=320)
    email: str | None = Field(default=None, max_length=320)
    tags: list[str] | None = Field(default=None, max_length=50)
    frequency: Literal["daily", "weekly"] | None = None


@router.post("/editions/test-send", status_code=202)
def test_send(item: TestSendIn, session: SessionDep, actor: EditorActor) -> dict[str, Any]:
    """Send the preview of a reader's (or a topic set's) next digest to ``to``, as "[TEST]"."""
    result = preview.request_test_send(session, item.to, email=item.email,
                                       tags=item.tags, frequency=item.frequency)
    # No address in the log (the reader's, or an inbox that may be one): what was sent.
    audit.record(session, actor.name, "edition.test_send", "edition:test",
                 {"articles": result.article_count, "frequency": result.frequency,
                  "tags": item.tags}, actor.ip)
    session.commit()
    return {"to": item.to, "subject": preview.TEST_PREFIX + result.subject,
            "articles": result.article_count, "frequency": result.frequency}


@router.get("/preview", response_class=HTMLResponse)
def preview_digest(
    session: SessionDep, email: str | None = None,
    tag: Annotated[list[str] | None, Query(max_length=50)] = None,
    frequency: Literal["daily", "weekly"] | None = None,
) -> HTMLResponse:
    """The HTML of the digest a reader (``email``) or topic set (``tag``…: topic slugs) would get next."""
    result = preview.build(session, email=email, tags=tag, frequency=frequency)
    return HTMLResponse(result.html)


@router.get("/editions/{edition_id}")
def edition_report(edition_id: RowId, session: SessionDep) -> dict[str, Any]:
    return {**reports.report(session, edition_id),
            "unsubscribes": attribution.for_edition(session, edition_id)}


@router.post("/editions/{edition_id}/resume")
def resume_edition(edition_id: RowId, session: SessionDep,
                   actor: EditorActor) -> dict[str, Any]:
    """Continue a paused edition (after fixing what paused it); 409 if it is not paused."""
    done = reconcile.resume(session, edition_id)
    _record_after(session, actor, "edition.resume", f"edition:{edition_id}", done)
    return done


@router.post("/editions/{edition_id}/requeue")
def requeue_edition(edition_id: RowId, session: SessionDep,
                    actor: EditorActor) -> dict[str, Any]:
    """Send again the deliveries that gave up after temporary failures (the dead letter)."""
    done = reconcile.requeue_dead(session, edition_id)
    _record_after(session, actor, "edition.requeue", f"edition:{edition_id}", done)
    return done


def _record_after(session: Session, actor: Actor, action: str, target: str,
                  details: dict[str, Any]) -> None:
    # resume and requeue commit their own work (and dispatch after it), so their entry
    # follows in a transaction of its own once they have succeeded.
    audit.record(session, actor.name, action, target, details, actor.ip)
    session.commit()


@router.post("/subscribers")
def import_subscribers(
    rows: Annotated[list[dict[str, Any]], Body(max_length=imports.MAX_ROWS_PER_REQUEST)],
    session: SessionDep, actor: AdminActor,
) -> dict[str, Any]:
    """Import readers from another tool (admins): a JSON list of {email, topics, frequency,
    consented_at?, source?}. Rows with ``consented_at`` are active at once."""
    result = imports.import_readers(session, rows)
    counts = result.as_dict()
    audit.record(session, actor.name, "readers.import", "readers",
                 {k: counts[k] for k in ("created", "updated", "unchanged", "skipped")}, actor.ip)
    session.commit()
    return result.as_dict()
