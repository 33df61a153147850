"""/admin/tokens: API tokens that act as their editor. Editors see and revoke their own,
admins everyone's. A new token is shown once, on the page that created it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import audit
from newsletter.accounts import api_tokens
from newsletter.errors import AccountError, Forbidden
from newsletter.models import ApiToken
from newsletter.web.console.auth import ConsoleUser, CurrentEditor, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router()
DONE = {"revoked": "The token was revoked: it no longer opens the API."}


def _listing(request: Request, session, user: ConsoleUser, status: int = 200, page: int = 1,
             **context) -> HTMLResponse:
    whose = None if user.is_admin else user.editor
    pages = Pages(page, api_tokens.count(session, whose))
    return render(request, user, "tokens.html", status, section="tokens", pages=pages,
                  tokens=api_tokens.listing(session, whose, pages.per_page, pages.offset),
                  done=DONE.get(request.query_params.get("done", "")), **context)


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, session: SessionDep, user: CurrentEditor,
                page: PageNumber = 1) -> HTMLResponse:
    return _listing(request, session, user, page=page, form={})


@router.post("/tokens", response_class=HTMLResponse)
def create_token(request: Request, session: SessionDep, user: CurrentEditor,
                 name: Annotated[str, Form(max_length=200)] = "") -> HTMLResponse:
    try:
        token, row = api_tokens.create(session, user.editor, name)
    except AccountError as exc:
        session.rollback()
        return _listing(request, session, user, 422, form={"name": name},
                        errors={"name": str(exc)[:1].upper() + str(exc)[1:] + "."})
    audit.record(session, user.actor.name, "token.create", f"token:{row.id}",
                 {"name": row.name, "prefix": row.prefix}, user.ip)
    session.commit()
    return _listing(request, session, user, 201, form={}, created=token, created_name=row.name)


def _revocable(session, user: ConsoleUser, token_id: int) -> ApiToken:
    row = api_tokens.get(session, token_id)
    if row.editor_id != user.editor.id and not user.is_admin:
        raise Forbidden("only its owner or an admin may revoke a token")
    return row


@router.get("/tokens/{token_id}/revoke", response_class=HTMLResponse)
def confirm_revoke(request: Request, session: SessionDep, user: CurrentEditor,
                   token_id: RowId) -> HTMLResponse:
    return render(request, user, "token_revoke.html", section="tokens",
                  token=_revocable(session, user, token_id))


@router.post("/tokens/{token_id}/revoke")
def revoke_token(session: SessionDep, user: CurrentEditor, token_id: RowId) -> Response:
    row = _revocable(session, user, token_id)
    if api_tokens.revoke(session, row):
        audit.record(session, user.actor.name, "token.revoke", f"token:{row.id}",
                     {"name": row.name, "owner": row.editor.email}, user.ip)
    session.commit()
    return RedirectResponse("/admin/tokens?done=revoked", 303)
