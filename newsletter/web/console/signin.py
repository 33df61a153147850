"""Signing in and out of the console: /admin/login, /admin/logout.

The sign-in form is protected before any session exists: GET sets a random nonce in a
cookie and puts the same nonce, signed, in the form; a POST whose field does not match its
cookie (a form posted from another site, or replayed from elsewhere) is refused.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from newsletter import audit
from newsletter.accounts import sessions, signin
from newsletter.config import get_settings
from newsletter.errors import CsrfRefused
from newsletter.web import ratelimit
from newsletter.web.console.auth import (
    COOKIE,
    CSRF_FIELD,
    CurrentEditor,
    clear_session_cookie,
    refuse_foreign_origin,
    render,
    secure_cookies,
    set_session_cookie,
)
from newsletter.web.deps import SessionDep, client, local_time

router = APIRouter(prefix="/admin", include_in_schema=False)
LOGIN_COOKIE = "nl_console_login"
LOGIN_FORM_MAX_AGE_S = 2 * 3600


def _serializer() -> URLSafeTimedSerializer:
    keys = get_settings().signing_keys
    return URLSafeTimedSerializer(list(reversed(keys)), salt="newsletter.console-sign-in")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of ours, never another site."""
    if (not target or not target.startswith("/admin") or target.startswith("/admin/login")
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return "/admin"
    return target


def _form(request: Request, status: int = 200, **context) -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    context.setdefault("next", safe_next(request.query_params.get("next")))
    response = render(request, None, "login.html", status,
                      login_token=_serializer().dumps(nonce), **context)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_MAX_AGE_S, path="/admin/login",
                        httponly=True, samesite="lax", secure=secure_cookies())
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, signed_out: bool = False) -> HTMLResponse:
    return _form(request, signed_out=signed_out)


Field = Annotated[str, Form(max_length=320)]


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, email: Field = "",
          password: Annotated[str, Form()] = "",  # no max_length: a 422 echoes the input
          csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/admin") -> Response:
    refuse_foreign_origin(request)
    _check_login_token(request, csrf_token)
    who = client(request)
    outcome = signin.attempt(session, email, password, address=ratelimit.client_key(who["ip"] or ""),
                             ip=who["ip"], user_agent=who["user_agent"])
    if outcome.just_locked:
        audit.record(session, outcome.editor.email, "editor.locked", f"editor:{outcome.editor.id}",
                     {"until": outcome.until.isoformat()}, who["ip"])
    if outcome.token is not None:
        audit.record(session, outcome.editor.email, "editor.sign_in",
                     f"editor:{outcome.editor.id}", {}, who["ip"])
    session.commit()
    if outcome.token is None:
        return _form(request, 429 if outcome.until else 401, email=email, next=safe_next(next),
                     error=_refusal(outcome))
    response = RedirectResponse(safe_next(next), 303)
    set_session_cookie(response, outcome.token)
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response


def _check_login_token(request: Request, token: str) -> None:
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    try:
        signed = _serializer().loads(token, max_age=LOGIN_FORM_MAX_AGE_S)
    except BadSignature:
        signed = None
    if not nonce or not isinstance(signed, str) or not hmac.compare_digest(signed, nonce):
        raise CsrfRefused("this sign-in form has expired or came from another site: "
                          "reload the page and sign in again")


def _refusal(outcome: signin.Outcome) -> str:
    zone = get_settings().timezone
    when = f"{local_time(outcome.until, '%H:%M on %d %b %Y')} ({zone})" if outcome.until else ""
    if outcome.refused == "account":
        return (f"This account is locked after too many wrong passwords. "
                f"Try again after {when}.")
    if outcome.refused == "address":
        return f"Too many failed sign-ins from your network. Try again after {when}."
    return "The email address or the password is wrong."


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentEditor) -> Response:
    sessions.end(session, request.cookies.get(COOKIE))
    session.commit()
    response = RedirectResponse("/admin/login?signed_out=1", 303)
    clear_session_cookie(response)
    return response
