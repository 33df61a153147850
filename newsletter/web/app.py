"""The web app: reader pages, the admin API, health."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from newsletter import articles, db, editions, subscriptions, tokens
from newsletter.config import CONSENT_TEXT, DEV_SECRET_KEY, get_settings
from newsletter.models import Tag

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def get_session() -> Iterator[Session]:
    session = db.session_factory()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
_bearer = HTTPBearer(auto_error=False)


def require_editor(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = get_settings().admin_token
    given = creds.credentials if creds else ""
    # Constant-time comparison; an unset token disables the admin API rather than opening it.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


Editor = Depends(require_editor)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("site_name", get_settings().site_name)
    return templates.TemplateResponse(request, name, context, status_code=status)


def message(request: Request, heading: str, *lines: str, status: int = 200,
            link: dict | None = None) -> HTMLResponse:
    return page(request, "message.html", status, heading=heading, lines=lines, link=link)


def invalid_link(request: Request, exc: tokens.InvalidToken) -> HTMLResponse:
    expired = isinstance(exc, tokens.ExpiredToken)
    return message(request, "This link has expired" if expired else "This link is not valid",
                   str(exc).capitalize() + ".", "Nothing has been changed.", status=400,
                   link={"url": "/subscribe", "label": "Subscribe again"} if expired else None)


def client(request: Request) -> dict[str, str | None]:
    return {"ip": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent")}


class EditionIn(BaseModel):
    frequency: Literal["daily", "weekly"]
    tags: list[str] | None = Field(default=None, max_length=50)
    dry_run: bool = False


def create_app() -> FastAPI:
    settings = get_settings()
    if settings.secret_key == DEV_SECRET_KEY:
        log.warning("NEWSLETTER_SECRET_KEY is not set: links are signed with a development key")
    app = FastAPI(title="newsletter", version="0.1.0")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/healthz")
    def healthz(session: SessionDep) -> JSONResponse:
        try:
            session.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check: database unreachable")
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    # ------------------------------------------------------------ reader pages

    def subscribe_form(request: Request, session: Session, form: dict, errors: dict,
                       status: int = 200) -> HTMLResponse:
        topics = session.scalars(select(Tag).order_by(Tag.name)).all()
        return page(request, "subscribe.html", status, topics=topics, form=form, errors=errors,
                    consent_text=CONSENT_TEXT)

    @app.get("/subscribe", response_class=HTMLResponse)
    def subscribe_page(request: Request, session: SessionDep) -> HTMLResponse:
        form = {"email": "", "topics": [], "frequency": "weekly", "consent": False}
        return subscribe_form(request, session, form, {})

    @app.post("/subscribe", response_class=HTMLResponse)
    def subscribe(
        request: Request,
        session: SessionDep,
        email: Annotated[str, Form(max_length=320)] = "",
        topics: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI form default
        frequency: Annotated[str, Form(max_length=16)] = "",
        consent: Annotated[str, Form(max_length=8)] = "",
        website: Annotated[str, Form(max_length=200)] = "",
    ) -> HTMLResponse:
        done = message(request, "Check your inbox",
                       "If this address can receive our newsletter, an email is on its way "
                       "with a link to confirm your subscription.",
                       "Nothing is sent until you confirm.")
        if website:  # the honeypot: bots fill every field; answer as if all went well
            return done
        form = {"email": email, "topics": topics, "frequency": frequency, "consent": bool(consent)}
        try:
            subscriptions.subscribe(session, email, topics, frequency,
                                    consent_given=bool(consent), source="form", **client(request))
        except subscriptions.SubscriptionError as exc:
            session.rollback()
            return subscribe_form(request, session, form, {exc.field or "email": str(exc)}, 422)
        session.commit()
        return done

    @app.get("/confirm/{token}", response_class=HTMLResponse)
    def confirm_page(request: Request, token: str) -> HTMLResponse:
        # Link scanners open every URL in an email; a GET that confirmed would let them
        # subscribe whoever a stranger typed into the form.
        return page(request, "action.html", heading="Confirm your subscription",
                    lines=["One more step: press the button to start receiving the newsletter."],
                    action=f"/confirm/{token}", button="Confirm my subscription")

    @app.post("/confirm/{token}", response_class=HTMLResponse)
    def confirm(request: Request, token: str, session: SessionDep) -> HTMLResponse:
        try:
            subscriptions.confirm(session, token, **client(request))
        except tokens.InvalidToken as exc:
            session.rollback()
            return invalid_link(request, exc)
        session.commit()
        return message(request, "You're subscribed",
                       "Thank you. Your first email will arrive with the next edition.")

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        return page(request, "action.html", heading="Unsubscribe",
                    lines=["Press the button and we will stop sending you the newsletter."],
                    action=f"/unsubscribe/{token}", button="Unsubscribe", ask_reason=True)

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    async def unsubscribe(request: Request, token: str) -> HTMLResponse:
        # RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click", urlencoded or
        # multipart, with no cookies; answer 200 without a redirect.
        form = await request.form()
        one_click = form.get("List-Unsubscribe") == "One-Click"
        reason = form.get("reason")
        with db.session_scope() as session:
            try:
                subscriptions.unsubscribe(
                    session, token, method="one-click" if one_click else "link",
                    reason=reason if isinstance(reason, str) else None, **client(request))
            except tokens.InvalidToken as exc:
                session.rollback()
                return invalid_link(request, exc)
        return message(request, "You're unsubscribed",
                       "You will not receive the newsletter any more.",
                       link={"url": "/subscribe", "label": "Subscribe again"})

    # ------------------------------------------------------------ admin API

    @app.post("/api/articles", status_code=201, dependencies=[Editor])
    def create_article(item: articles.ArticleIn, session: SessionDep,
                       response: Response) -> dict[str, Any]:
        try:
            article, created = articles.publish(session, item.model_dump())
        except articles.ArticleError as exc:
            session.rollback()
            raise HTTPException(422, str(exc)) from None
        session.commit()
        response.status_code = 201 if created else 200
        return articles.to_dict(article)

    @app.post("/api/editions", status_code=202, dependencies=[Editor])
    def create_edition(item: EditionIn, session: SessionDep) -> dict[str, Any]:
        try:
            edition = editions.request(session, item.frequency, tags=item.tags,
                                       dry_run=item.dry_run, source="api")
        except editions.EditionError as exc:
            session.rollback()
            raise HTTPException(422, str(exc)) from None
        session.commit()
        return {"id": edition.id, "status": edition.status}

    @app.get("/api/editions/{edition_id}", dependencies=[Editor])
    def edition_report(edition_id: int, session: SessionDep) -> dict[str, Any]:
        try:
            return editions.report(session, edition_id)
        except editions.EditionNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    return app


app = create_app()
