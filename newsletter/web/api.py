"""The admin API for editors (bearer token)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from newsletter import articles, editions
from newsletter.web.deps import Editor, SessionDep

router = APIRouter(prefix="/api", dependencies=[Editor])


class EditionIn(BaseModel):
    frequency: Literal["daily", "weekly"]
    tags: list[str] | None = Field(default=None, max_length=50)
    dry_run: bool = False


@router.post("/articles", status_code=201)
def create_article(
    item: articles.ArticleIn, session: SessionDep, response: Response
) -> dict[str, Any]:
    try:
        article, created = articles.publish(session, item.model_dump())
    except articles.ArticleError as exc:
        session.rollback()
        raise HTTPException(422, str(exc)) from None
    session.commit()
    response.status_code = 201 if created else 200
    return articles.to_dict(article)


@router.post("/editions", status_code=202)
def create_edition(item: EditionIn, session: SessionDep) -> dict[str, Any]:
    try:
        edition = editions.request(
            session, item.frequency, tags=item.tags, dry_run=item.dry_run, source="api"
        )
    except editions.EditionError as exc:
        session.rollback()
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return {"id": edition.id, "status": edition.status}


@router.get("/editions/{edition_id}")
def edition_report(edition_id: int, session: SessionDep) -> dict[str, Any]:
    try:
        return editions.report(session, edition_id)
    except editions.EditionNotFound as exc:
        raise HTTPException(404, str(exc)) from None
