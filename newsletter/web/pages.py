"""Reader pages: subscribe, confirm, unsubscribe."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import db, subscriptions, tokens
from newsletter.config import CONSENT_TEXT
from newsletter.models import Tag
from newsletter.web.deps import SessionDep, client, invalid_link, message, page

router = APIRouter()


def subscribe_form(
    request: Request, session: Session, form: dict, errors: dict, status: int = 200
) -> HTMLResponse:
    topics = session.scalars(select(Tag).order_by(Tag.name)).all()
    return page(
        request,
        "subscribe.html",
        status,
        topics=topics,
        form=form,
        errors=errors,
        consent_text=CONSENT_TEXT,
    )


@router.get("/subscribe", response_class=HTMLResponse)
def subscribe_page(request: Request, session: SessionDep) -> HTMLResponse:
    form = {"email": "", "topics": [], "frequency": "weekly", "consent": False}
    return subscribe_form(request, session, form, {})


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    topics: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI form default
    frequency: Annotated[str, Form(max_length=16)] = "",
    consent: Annotated[str, Form(max_length=8)] = "",
    website: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    done = message(
        request,
        "Check your inbox",
        "If this address can receive our newsletter, an email is on its way "
        "with a link to confirm your subscription.",
        "Nothing is sent until you confirm.",
    )
    if website:  # the honeypot: bots fill every field; answer as if all went well
        return done
    form = {"email": email, "topics": topics, "frequency": frequency, "consent": bool(consent)}
    try:
        subscriptions.subscribe(
            session,
            email,
            topics,
            frequency,
            consent_given=bool(consent),
            source="form",
            **client(request),
        )
    except subscriptions.SubscriptionError as exc:
        session.rollback()
        return subscribe_form(request, session, form, {exc.field or "email": str(exc)}, 422)
    session.commit()
    return done


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> HTMLResponse:
    # Link scanners open every URL in an email; a GET that confirmed would let them
    # subscribe whoever a stranger typed into the form.
    return page(
        request,
        "action.html",
        heading="Confirm your subscription",
        lines=["One more step: press the button to start receiving the newsletter."],
        action=f"/confirm/{token}",
        button="Confirm my subscription",
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    try:
        subscriptions.confirm(session, token, **client(request))
    except tokens.InvalidToken as exc:
        session.rollback()
        return invalid_link(request, exc)
    session.commit()
    return message(
        request,
        "You're subscribed",
        "Thank you. Your first email will arrive with the next edition.",
    )


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    return page(
        request,
        "action.html",
        heading="Unsubscribe",
        lines=["Press the button and we will stop sending you the newsletter."],
        action=f"/unsubscribe/{token}",
        button="Unsubscribe",
        ask_reason=True,
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    # RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click", urlencoded or
    # multipart, with no cookies; answer 200 without a redirect.
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    reason = form.get("reason")
    with db.session_scope() as session:
        try:
            subscriptions.unsubscribe(
                session,
                token,
                method="one-click" if one_click else "link",
                reason=reason if isinstance(reason, str) else None,
                **client(request),
            )
        except tokens.InvalidToken as exc:
            session.rollback()
            return invalid_link(request, exc)
    return message(
        request,
        "You're unsubscribed",
        "You will not receive the newsletter any more.",
        link={"url": "/subscribe", "label": "Subscribe again"},
    )
