"""/admin/editors (admins): accounts, roles, passwords. Removal and password resets are
confirmed on a page of their own before anything changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import audit
from newsletter.accounts import editors
from newsletter.errors import AccountError
from newsletter.web.console.auth import CurrentAdmin, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router(admin_only=True)
Field = Annotated[str, Form(max_length=320)]
# No max_length: FastAPI's 422 would echo the password back. The body limit (64 KB) bounds
# it, and passwords.check_strength refuses an overlong one in words.
Password = Annotated[str, Form()]
DONE = {"added": "The editor can now sign in.", "removed": "The editor was removed.",
        "role": "The role was changed.", "password": "The password was changed; "
        "the editor was signed out everywhere."}


def _listing(request: Request, session, user, status: int = 200, page: int = 1,
             **context) -> HTMLResponse:
    pages = Pages(page, editors.count_active(session))
    return render(request, user, "editors.html", status, section="editors", pages=pages,
                  editors=editors.active(session, pages.per_page, pages.offset),
                  done=DONE.get(request.query_params.get("done", "")), **context)


@router.get("/editors", response_class=HTMLResponse)
def editors_page(request: Request, session: SessionDep, user: CurrentAdmin,
                 page: PageNumber = 1) -> HTMLResponse:
    return _listing(request, session, user, page=page, form={"role": "editor"})


@router.post("/editors", response_class=HTMLResponse)
def add_editor(request: Request, session: SessionDep, user: CurrentAdmin, email: Field = "",
               role: Field = "editor", password: Password = "") -> Response:
    try:
        editor = editors.add(session, email, role, password)
    except AccountError as exc:
        session.rollback()
        field = "password" if "password" in str(exc) else "role" if "role" in str(exc) else "email"
        return _listing(request, session, user, 422, form={"email": email, "role": role},
                        errors={field: str(exc)[:1].upper() + str(exc)[1:] + "."})
    audit.record(session, user.actor.name, "editor.add", f"editor:{editor.id}",
                 {"email": editor.email, "role": editor.role}, user.ip)
    session.commit()
    return RedirectResponse("/admin/editors?done=added", 303)


@router.post("/editors/{editor_id}/role")
def change_role(session: SessionDep, user: CurrentAdmin, editor_id: RowId,
                role: Field = "") -> Response:
    editor = editors.get(session, editor_id)
    before = editor.role
    if editors.set_role(session, editor, role):
        audit.record(session, user.actor.name, "editor.role", f"editor:{editor.id}",
                     {"email": editor.email, "from": before, "to": editor.role}, user.ip)
    session.commit()
    return RedirectResponse("/admin/editors?done=role", 303)


@router.get("/editors/{editor_id}/remove", response_class=HTMLResponse)
def confirm_remove(request: Request, session: SessionDep, user: CurrentAdmin,
                   editor_id: RowId) -> HTMLResponse:
    return render(request, user, "editor_remove.html", section="editors",
                  editor=editors.get(session, editor_id))


@router.post("/editors/{editor_id}/remove")
def remove_editor(session: SessionDep, user: CurrentAdmin, editor_id: RowId) -> Response:
    editor = editors.get(session, editor_id)
    editors.remove(session, editor)
    audit.record(session, user.actor.name, "editor.remove", f"editor:{editor.id}",
                 {"email": editor.email}, user.ip)
    session.commit()
    return RedirectResponse("/admin/editors?done=removed", 303)


@router.get("/editors/{editor_id}/password", response_class=HTMLResponse)
def password_form(request: Request, session: SessionDep, user: CurrentAdmin,
                  editor_id: RowId) -> HTMLResponse:
    return render(request, user, "editor_password.html", section="editors",
                  editor=editors.get(session, editor_id), errors={})


@router.post("/editors/{editor_id}/password", response_class=HTMLResponse)
def reset_password(request: Request, session: SessionDep, user: CurrentAdmin, editor_id: RowId,
                   password: Password = "", confirm: Password = "") -> Response:
    editor = editors.get(session, editor_id)
    try:
        if password != confirm:
            raise AccountError("the two passwords differ")
        editors.reset_password(session, editor, password)
    except AccountError as exc:
        session.rollback()
        return render(request, user, "editor_password.html", 422, section="editors",
                      editor=editors.get(session, editor_id),
                      errors={"password": str(exc)[:1].upper() + str(exc)[1:] + "."})
    audit.record(session, user.actor.name, "editor.password", f"editor:{editor.id}",
                 {"email": editor.email}, user.ip)
    session.commit()
    return RedirectResponse("/admin/editors?done=password", 303)
