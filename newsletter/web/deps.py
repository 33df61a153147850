"""What every route shares: the database session, who is calling the API and what their role
allows, page rendering, the one handler of domain errors."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from newsletter import db, i18n, tokens
from newsletter.accounts import api_tokens
from newsletter.accounts.actors import ADMIN_TOKEN_ACTOR, Actor
from newsletter.config import N_, get_settings
from newsletter.errors import Forbidden, NewsletterError, NotSignedIn, SubscriptionError
from newsletter.states import EditorRole

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
templates = Jinja2Templates(directory=str(HERE / "templates"))


class RequestSession(Session):
    """A session that uses one pooled connection at a time, even while committing.

    The outbox's after-commit bookkeeping opens a second session on ``get_bind()``; on a
    plain session that checks out a second connection while the first is still held, so
    enough concurrent requests each held one and waited for another until the pool timed
    out. Bound to the request's own connection, a request never needs two. The connection
    goes back to the pool on commit, rollback and close, as a plain session's does, not
    only when the request is over.
    """

    _connection: Connection | None = None

    def get_bind(self, *args: Any, **kwargs: Any) -> Engine | Connection:
        # Checked out on first use, not up front: /healthz must see an unreachable
        # database as an error it handles, not as a failing dependency.
        if self._connection is None or self._connection.closed:
            self._connection = db.get_engine().connect()
        return self._connection

    def commit(self) -> None:
        super().commit()
        self._release()

    def rollback(self) -> None:
        super().rollback()
        self._release()

    def close(self) -> None:
        super().close()
        self._release()

    def _release(self) -> None:
        if self._connection is not None and not self.in_transaction():
            self._connection.close()
            self._connection = None


@contextmanager
def request_session() -> Iterator[Session]:
    """A request's session, for a route that opens it in its own thread (see pages.subscribe)."""
    session = RequestSession(expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()


def get_session() -> Iterator[Session]:
    with request_session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
# Row ids are PostgreSQL integers (SQLite: 64-bit); a larger number in a URL names no row
# and must be refused as input, not passed to the driver (an overflow there was a 500).
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, PathParam(ge=1, le=MAX_ROW_ID)]
_bearer = HTTPBearer(auto_error=False)


def api_actor(
    request: Request, session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """Who calls the admin API: the automation token (an admin) or an editor's API token
    (with that editor's role). A console cookie is not enough: a page on another site could
    make the browser send it (CSRF); the API wants a bearer token the browser never adds."""
    given = creds.credentials if creds else ""
    ip = client(request)["ip"]
    expected = get_settings().admin_token
    # Constant-time comparison; an unset token disables it rather than opening the API.
    if expected and given and hmac.compare_digest(given.encode(), expected.encode()):
        return Actor(ADMIN_TOKEN_ACTOR, EditorRole.ADMIN, ip=ip)
    token = api_tokens.authenticate(session, given) if given else None
    if token is None:
        raise HTTPException(401, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    if session.dirty:
        session.commit()  # its last use, kept even if the call then fails
    return Actor(f"token:{token.name}", EditorRole(token.editor.role), token.editor_id, ip)


@lru_cache(maxsize=2)
def require_role(role: str) -> Callable[[Actor], Actor]:
    """A dependency: the API caller, if their role allows ``role``; else 403, nothing done.
    Cached, so a router's and a route's use of one role are one dependency for FastAPI."""
    needed = EditorRole(role)

    def allowed(actor: Annotated[Actor, Depends(api_actor)]) -> Actor:
        if not actor.may(needed):
            raise Forbidden(f"this needs the {needed} role; {actor.name} is {actor.role}")
        return actor

    return allowed


# Router-level guards, and the caller for routes that audit what they change.
Editor = Depends(require_role(EditorRole.EDITOR))
Admin = Depends(require_role(EditorRole.ADMIN))
EditorActor = Annotated[Actor, Depends(require_role(EditorRole.EDITOR))]
AdminActor = Annotated[Actor, Depends(require_role(EditorRole.ADMIN))]


def local_time(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An instant (or its ISO text, as reports give it) in the site's time zone (TIMEZONE),
    for pages."""
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(ZoneInfo(get_settings().timezone)).strftime(fmt)


templates.env.filters["local_time"] = local_time
templates.env.globals["now_utc"] = lambda: datetime.now(UTC)
# {% trans %} and _() in the page's language (the render's ``locale``, set by page()).
i18n.install(templates.env)


def request_locale(request: Request, stored: str | None = None) -> str:
    """The language of a reader page: ?lang= if it names one we ship, else the reader's own
    (``stored``, on pages about one reader), else the browser's Accept-Language, else
    LANGUAGE."""
    asked = i18n.usable(request.query_params.get("lang"))
    if asked:
        return asked
    if stored and i18n.usable(stored):
        return i18n.locale_of(stored)
    return i18n.negotiate(None, request.headers.get("accept-language"))


def language_links(request: Request) -> list[dict[str, str]]:
    """The language switcher: this page in each shipped language (same path, ?lang=)."""
    links = []
    for lang in i18n.languages():
        url = request.url.include_query_params(lang=lang)
        links.append({"lang": lang, "name": i18n.language_name(lang),
                      "url": f"{url.path}?{url.query}"})
    return links


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("site_name", get_settings().site_name)
    if "locale" not in context:
        context["locale"] = request_locale(request)
    if context.get("errors"):  # messages of ours, shown in the page's language
        context["errors"] = {field: i18n.resolve(context["locale"], text)
                             for field, text in context["errors"].items()}
    context.setdefault("language_links", language_links(request))
    response = templates.TemplateResponse(request, name, context, status_code=status)
    # The same URL answers in the language the browser asks for: caches must keep them apart.
    response.headers.append("Vary", "Accept-Language")
    return response


def message(request: Request, heading: str | i18n.Later, *lines: str | i18n.Later,
            status: int = 200, link: dict | None = None, locale: str | None = None
            ) -> HTMLResponse:
    """A page of a heading and lines, in the reader's language: each is a message id
    (marked N_ where written) or an i18n.later() with values; other text shows as is."""
    locale = locale or request_locale(request)
    tr = [i18n.resolve(locale, t) for t in (heading, *lines)]
    if link is not None:
        link = {**link, "label": i18n.resolve(locale, link["label"])}
    return page(request, "message.html", status, heading=tr[0], lines=tr[1:], link=link,
                locale=locale)


# The reasons a link is refused (tokens, subscriptions), as a reader page says them: marked
# here for the catalogues, found by their English text.
_LINK_REASONS = (N_("This link is not valid."), N_("This link has expired."),
                 N_("This form is not valid."), N_("This form has expired."),
                 N_("This link was replaced by a later choice."))


def invalid_link(request: Request, exc: tokens.InvalidToken) -> HTMLResponse:
    expired = isinstance(exc, tokens.ExpiredToken)
    return message(request,
                   N_("This link has expired") if expired else N_("This link is not valid"),
                   str(exc).capitalize() + ".", N_("Nothing has been changed."), status=400,
                   link={"url": "/subscribe", "label": N_("Subscribe again")} if expired
                   else None)


# What a reader's page says for each status of a domain error (its message follows).
_HEADINGS = {404: N_("Not found"), 409: N_("Not possible now"),
             422: N_("Please check what you sent")}


def newsletter_error(request: Request, exc: NewsletterError) -> Response:
    """The one answer to a domain error: its status, and its message where it is ours to show.

    The request's session is closed, rolling back, before this runs: a refused request
    changes nothing. Under /api/ the answer is JSON ``{"detail": message}``; a reader's page
    gets the error page (a bad link its own, with the way to subscribe again). A 5xx of ours
    says no more than an unexpected error would: the details go to the log.
    """
    status = exc.status
    if status >= 500:
        log.error("%s answered %d", type(exc).__name__, status, exc_info=exc)
    detail = str(exc) if status < 500 else "Internal Server Error"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": detail}, status)
    if request.url.path.startswith("/admin"):
        return console_error(request, exc, detail)
    if isinstance(exc, tokens.InvalidToken):
        return invalid_link(request, exc)
    if status >= 500:
        return message(request, N_("Something went wrong"),
                       N_("Please try again in a few minutes."), status=status)
    if isinstance(exc, SubscriptionError):  # ours to translate
        detail = i18n.later(exc.message_id, **exc.variables)
    else:
        detail = detail[:1].upper() + detail[1:]
    return message(request, _HEADINGS.get(status, N_("Something went wrong")), detail,
                   status=status)


def console_error(request: Request, exc: NewsletterError, detail: str) -> Response:
    """A console page's answer to a domain error: signed out, to the sign-in page (and back
    here after it); otherwise the console's own error page."""
    if isinstance(exc, NotSignedIn) and request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/admin/login?next={quote(target, safe='')}", 303)
    if isinstance(exc, NotSignedIn):  # a change with no session can carry no right token
        return page(request, "console/message.html", 403, heading="Signed out",
                    lines=["Your session has ended, so nothing was changed.",
                           "Sign in again, then make the change again."],
                    link={"url": "/admin/login", "label": "Sign in"}, user=None, csrf_token="")
    heading = {403: "Not allowed"}.get(exc.status) or _HEADINGS.get(exc.status,
                                                                    "Something went wrong")
    text = detail[:1].upper() + detail[1:] if exc.status < 500 else "Please try again."
    text += "" if text.endswith((".", "!", "?", ")")) else "."
    user = getattr(request.state, "console_user", None)
    return page(request, "console/message.html", exc.status, heading=heading, lines=[text],
                user=user, csrf_token=user.csrf_token if user else "")


def client(request: Request) -> dict[str, str | None]:
    """Who is asking, for the consent ledger."""
    return {"ip": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent")}
