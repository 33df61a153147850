"""Who is signed in to the console, what their role allows, and CSRF.

Every console router is made by ``console_router()``: its routes answer only to a signed-in
editor (signed out, a page redirects to /admin/login?next=…), and every POST, PUT, PATCH or
DELETE must carry the session's CSRF token (form field ``csrf_token``, or the
``X-CSRF-Token`` header htmx sends) from our own origin, else 403 before the route runs.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.accounts import sessions
from newsletter.accounts.actors import Actor
from newsletter.config import get_settings
from newsletter.errors import CsrfRefused, Forbidden, NotSignedIn
from newsletter.models import ConsoleSession, Editor
from newsletter.states import EditorRole
from newsletter.web.deps import SessionDep, client, page

COOKIE = "nl_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in editor of this request."""

    editor: Editor
    csrf_token: str
    ip: str | None

    @property
    def role(self) -> EditorRole:
        return EditorRole(self.editor.role)

    @property
    def is_admin(self) -> bool:
        return self.role is EditorRole.ADMIN

    @property
    def actor(self) -> Actor:
        """For audit.record: the editor's address, role and where they are."""
        return Actor(self.editor.email, self.role, self.editor.id, self.ip)


def secure_cookies() -> bool:
    return get_settings().base_url.startswith("https://")


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=int(get_settings().console_session_hours * 3600),
                        path="/admin", httponly=True, samesite="lax", secure=secure_cookies())


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="lax",
                           secure=secure_cookies())


def signed_in(request: Request, session: SessionDep) -> ConsoleUser:
    """The editor whose live session the cookie names, else NotSignedIn (→ sign-in page)."""
    row: ConsoleSession | None = sessions.find(session, request.cookies.get(COOKIE))
    if session.dirty or session.deleted:
        session.commit()  # its last use, or an expired session gone
    if row is None:
        raise NotSignedIn("sign in to use the console")
    user = ConsoleUser(row.editor, row.csrf_secret, client(request)["ip"])
    request.state.console_user = user  # for error pages, which show the navigation
    return user


async def console_user(request: Request,
                       user: Annotated[ConsoleUser, Depends(signed_in)]) -> ConsoleUser:
    """``signed_in``, and for a change, the CSRF token and a same-site origin."""
    if request.method not in SAFE_METHODS:
        refuse_foreign_origin(request)
        given = request.headers.get(CSRF_HEADER, "")
        if not given:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else ""
        if not hmac.compare_digest(given.encode(), user.csrf_token.encode()):
            raise CsrfRefused("this form has expired or did not come from the console: "
                              "reload the page and try again (nothing was changed)")
    return user


def refuse_foreign_origin(request: Request) -> None:
    """A browser names the page a POST came from in Origin: it must be us."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's request, or an old one: the token decides
        return
    ours = {_origin(get_settings().base_url), f"{request.url.scheme}://{request.url.netloc}"}
    if _origin(origin) not in ours:
        raise CsrfRefused("a change to the console was posted from another site: refused")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def require_admin(user: Annotated[ConsoleUser, Depends(console_user)]) -> ConsoleUser:
    if not user.is_admin:
        raise Forbidden("this page is for admins; ask an admin if you need it")
    return user


def render(request: Request, user: ConsoleUser | None, template: str, status: int = 200,
           **context) -> HTMLResponse:
    """A console page: ``console/<template>`` on the console layout, with the user's
    navigation and the CSRF token its forms (and htmx) carry."""
    return page(request, f"console/{template}", status, user=user,
                csrf_token=user.csrf_token if user else "", **context)


CurrentEditor = Annotated[ConsoleUser, Depends(console_user)]
CurrentAdmin = Annotated[ConsoleUser, Depends(require_admin)]


def console_router(admin_only: bool = False) -> APIRouter:
    """A router for console pages under /admin: signed-in editors (or admins) only, CSRF
    checked on every change, even for a route that forgets to ask for the user."""
    guard = require_admin if admin_only else console_user
    return APIRouter(prefix="/admin", dependencies=[Depends(guard)],
                     include_in_schema=False)
