"""/admin/preview: a reader's (or a set of topics') next digest, its HTML in a sandboxed
frame beside its text part, at phone or desktop width; and a test send to oneself."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import audit
from newsletter.editions import preview
from newsletter.errors import NotFound, PreviewError
from newsletter.models import Tag
from newsletter.web.console.auth import ConsoleUser, CurrentEditor, console_router, render
from newsletter.web.deps import SessionDep
from newsletter.web.hardening import CONSOLE_POLICY, EMAIL_POLICY

router = console_router()

# The preview page frames its own /admin/preview/frame, and nothing else.
PAGE_POLICY = CONSOLE_POLICY.replace("default-src 'none';", "default-src 'none'; frame-src 'self';")
# The framed email: its inlined CSS and remote pictures, no script, no forms, nothing it may
# navigate or reach; only the console may frame it, and the browser sandboxes it even so.
FRAME_POLICY = f"{EMAIL_POLICY}; frame-ancestors 'self'; sandbox"
WIDTHS = ("desktop", "phone")
Email = Annotated[str, Query(max_length=320)]
Tags = Annotated[list[str] | None, Query(max_length=50)]
Frequency = Annotated[str, Query(max_length=16)]


@router.get("/preview", response_class=HTMLResponse)
def preview_page(request: Request, session: SessionDep, user: CurrentEditor,
                 email: Email = "", tag: Tags = None, frequency: Frequency = "",
                 width: Annotated[str, Query(max_length=16)] = "desktop") -> Response:
    form = {"email": email.strip(), "tags": tag or [], "frequency": frequency,
            "width": width if width in WIDTHS else "desktop"}
    if not form["email"] and not form["tags"]:
        return _page(request, session, user, form=form)
    try:
        shown = preview.build(session, **_asked(form))
    except (PreviewError, NotFound) as exc:
        return _page(request, session, user, exc.status, form=form,
                     errors={"email" if form["email"] else "tags": _sentence(str(exc))})
    query = urlencode(_query(form), doseq=True)
    sent = request.query_params.get("sent") == "1"
    return _page(request, session, user, form=form, shown=shown, query=query, sent=sent)


@router.get("/preview/frame", response_class=HTMLResponse)
def preview_frame(session: SessionDep, user: CurrentEditor, email: Email = "",
                  tag: Tags = None, frequency: Frequency = "") -> HTMLResponse:
    """The digest's HTML alone, for the preview page's sandboxed frame."""
    shown = preview.build(session, **_asked({"email": email.strip(), "tags": tag or [],
                                             "frequency": frequency}))
    return HTMLResponse(shown.html, headers={"Content-Security-Policy": FRAME_POLICY})


@router.post("/preview/test-send")
def test_send(request: Request, session: SessionDep, user: CurrentEditor,
              email: Annotated[str, Form(max_length=320)] = "",
              tag: Annotated[list[str] | None, Form(max_length=50)] = None,
              frequency: Annotated[str, Form(max_length=16)] = "",
              width: Annotated[str, Form(max_length=16)] = "desktop") -> Response:
    """Send this preview as one "[TEST]" email to the signed-in editor's own address."""
    form = {"email": email.strip(), "tags": tag or [], "frequency": frequency, "width": width}
    try:
        result = preview.request_test_send(session, user.editor.email, **_asked(form))
    except (PreviewError, NotFound) as exc:
        session.rollback()
        return _page(request, session, user, exc.status, form=form,
                     errors={"email" if form["email"] else "tags": _sentence(str(exc))})
    # No address in the log (the reader's, or the inbox): what was sent, as the API records.
    audit.record(session, user.actor.name, "edition.test_send", "edition:test",
                 {"articles": result.article_count, "frequency": result.frequency,
                  "tags": form["tags"] or None}, user.ip)
    session.commit()
    query = urlencode([*_query(form), ("width", form["width"]), ("sent", "1")], doseq=True)
    return RedirectResponse(f"/admin/preview?{query}", 303)


def _asked(form: dict[str, Any]) -> dict[str, Any]:
    return {"email": form["email"] or None, "tags": form["tags"] or None,
            "frequency": form["frequency"] or None}


def _query(form: dict[str, Any]) -> list[tuple[str, str]]:
    return ([("email", form["email"])] if form["email"] else []) \
        + [("tag", t) for t in form["tags"]] \
        + ([("frequency", form["frequency"])] if form["frequency"] else [])


def _page(request: Request, session: Session, user: ConsoleUser, status: int = 200,
          **context: Any) -> HTMLResponse:
    topics = session.execute(select(Tag.slug, Tag.name).order_by(Tag.name)).all()
    response = render(request, user, "preview.html", status, section="preview",
                      topics=topics, widths=WIDTHS, **context)
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
