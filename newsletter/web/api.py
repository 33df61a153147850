"""The admin API for editors (bearer token).

Domain errors (newsletter/errors.py) are answered by the app's one handler with their
status and ``{"detail": message}``; the routes here only call and commit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from newsletter.editions import preview, reconcile, reports, withdrawal
from newsletter.editions import requests as editions
from newsletter.newsroom import articles
from newsletter.readers import imports
from newsletter.web.deps import Editor, RowId, SessionDep

router = APIRouter(prefix="/api", dependencies=[Editor])


class EditionIn(BaseModel):
    frequency: Literal["daily", "weekly"]
    tags: list[str] | None = Field(default=None, max_length=50)
    dry_run: bool = False


@router.post("/articles", status_code=201)
def create_article(
    item: articles.ArticleIn, session: SessionDep, response: Response
) -> dict[str, Any]:
    article, created = articles.publish(session, item.model_dump())
    session.commit()
    response.status_code = 201 if created else 200
    return articles.to_dict(article)


@router.delete("/articles/{article_id}")
def unpublish_article(article_id: RowId, session: SessionDep) -> dict[str, Any]:
    done = withdrawal.unpublish(session, article_id)
    session.commit()
    return {**articles.to_dict(done.article),
            "deliveries_changed": done.deliveries_changed,
            "deliveries_suppressed": done.deliveries_suppressed}


@router.post("/editions", status_code=202)
def create_edition(
    item: EditionIn, session: SessionDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Request an edition; the same ``Idempotency-Key`` again returns the first one."""
    edition = editions.request(
        session, item.frequency, tags=item.tags, dry_run=item.dry_run, source="api",
        idempotency_key=idempotency_key,
    )
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
def test_send(item: TestSendIn, session: SessionDep) -> dict[str, Any]:
    """Send the preview of a reader's (or a topic set's) next digest to ``to``, as "[TEST]"."""
    result = preview.request_test_send(session, item.to, email=item.email,
                                       tags=item.tags, frequency=item.frequency)
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
    return reports.report(session, edition_id)


@router.post("/editions/{edition_id}/resume")
def resume_edition(edition_id: RowId, session: SessionDep) -> dict[str, Any]:
    """Continue a paused edition (after fixing what paused it); 409 if it is not paused."""
    return reconcile.resume(session, edition_id)


@router.post("/editions/{edition_id}/requeue")
def requeue_edition(edition_id: RowId, session: SessionDep) -> dict[str, Any]:
    """Send again the deliveries that gave up after temporary failures (the dead letter)."""
    return reconcile.requeue_dead(session, edition_id)


@router.post("/subscribers")
def import_subscribers(
    rows: Annotated[list[dict[str, Any]], Body(max_length=imports.MAX_ROWS_PER_REQUEST)],
    session: SessionDep,
) -> dict[str, Any]:
    """Import readers from another tool: a JSON list of {email, topics, frequency,
    consented_at?, source?}. Rows with ``consented_at`` are active at once."""
    result = imports.import_readers(session, rows)
    session.commit()
    return result.as_dict()
