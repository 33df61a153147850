"""What every route shares: the database session, editor auth, page rendering."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from newsletter import db, tokens
from newsletter.config import get_settings
from newsletter.errors import NewsletterError

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


# What a reader's page says for each status of a domain error (its message follows).
_HEADINGS = {404: "Not found", 409: "Not possible now", 422: "Please check what you sent"}


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
    if isinstance(exc, tokens.InvalidToken):
        return invalid_link(request, exc)
    if status >= 500:
        return message(request, "Something went wrong", "Please try again in a few minutes.",
                       status=status)
    return message(request, _HEADINGS.get(status, "Something went wrong"),
                   detail[:1].upper() + detail[1:], status=status)


def client(request: Request) -> dict[str, str | None]:
    """Who is asking, for the consent ledger."""
    return {"ip": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent")}
