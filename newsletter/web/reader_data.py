"""The reader's own data, behind the short-lived link we email on request.

Export, the consent receipt, erasure and subscribing again live here, not on the
preferences page: its link is in every email and travels with a forwarded one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from newsletter import i18n, tokens
from newsletter.config import CONSENT_TEXT, N_
from newsletter.models import Reader
from newsletter.readers import privacy, subscriptions
from newsletter.web.deps import SessionDep, client, invalid_link, message, page, request_locale
from newsletter.web.pages import _csrf, _csrf_ok

router = APIRouter(prefix="/my-data")


def _private(response: Response) -> Response:
    # The token is in the path: no Referer may carry it to a link on the page.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _reader(request: Request, session: Session, token: str) -> Reader | HTMLResponse:
    try:
        return privacy.reader_from_data_link(session, token)
    except tokens.ExpiredToken:
        locale = request_locale(request)
        return _private(message(
            request, N_("This link has expired"),
            i18n.later(N_("Links to your data work for %(lifetime)s, and this one is older. "
                          "Nothing has been changed."),
                       lifetime=privacy.data_link_lifetime(locale)),
            N_("Open the preferences link in any of our emails to ask for a new one."),
            status=400, locale=locale))
    except tokens.InvalidToken as exc:
        return _private(invalid_link(request, exc))


def _data_page(request: Request, session: Session, reader: Reader, token: str, *,
               errors: dict | None = None, status: int = 200) -> Response:
    locale = request_locale(request, reader.locale)
    return _private(page(request, "my_data.html", status, reader=reader, token=token,
                         csrf=_csrf(reader), errors=errors or {}, consent_text=CONSENT_TEXT,
                         link_lifetime=privacy.data_link_lifetime(locale), locale=locale))


@router.get("/{token}", response_class=HTMLResponse)
def my_data(request: Request, token: str, session: SessionDep) -> Response:
    reader = _reader(request, session, token)
    if isinstance(reader, Response):
        return reader
    return _data_page(request, session, reader, token)


@router.get("/{token}/export.json")
def export_mine(request: Request, token: str, session: SessionDep) -> Response:
    reader = _reader(request, session, token)
    if isinstance(reader, Response):
        return reader
    return _private(JSONResponse(privacy.export(session, reader.email), headers={
        "Content-Disposition": 'attachment; filename="my-newsletter-data.json"'}))


@router.get("/{token}/consent.json")
def consent_receipt(request: Request, token: str, session: SessionDep) -> Response:
    reader = _reader(request, session, token)
    if isinstance(reader, Response):
        return reader
    return _private(JSONResponse(privacy.consent_receipt(session, reader), headers={
        "Content-Disposition": 'attachment; filename="consent-receipt.json"'}))


@router.post("/{token}/erase", response_class=HTMLResponse)
def erase_mine(
    request: Request,
    token: str,
    session: SessionDep,
    confirm: Annotated[str, Form(max_length=8)] = "",
    csrf: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    reader = _reader(request, session, token)
    if isinstance(reader, Response):
        return reader
    if not _csrf_ok(reader, csrf) or not confirm:
        return _data_page(request, session, reader, token, status=422, errors={
            "erase": N_("Tick the box to confirm that you want everything deleted.")})
    locale = request_locale(request, reader.locale)  # the reader is gone after this
    privacy.erase(session, reader.email)
    session.commit()
    return _private(message(
        request, N_("Your data has been deleted"),
        N_("We have deleted your address, your choices and your history. We keep only a "
           "one-way fingerprint of the address so that we never email it again unless you "
           "sign up afresh."),
        link={"url": f"/subscribe?lang={locale}", "label": N_("Back to the sign-up page")},
        locale=locale))


@router.post("/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe(
    request: Request,
    token: str,
    session: SessionDep,
    consent: Annotated[str, Form(max_length=8)] = "",
    csrf: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    reader = _reader(request, session, token)
    if isinstance(reader, Response):
        return reader
    if not _csrf_ok(reader, csrf):
        return _data_page(request, session, reader, token, status=403, errors={
            "consent": N_("This page is out of date. Please reload it and try again.")})
    try:
        # subscriptions.resubscribe takes the reader's unsubscribe link; this link proves
        # the mailbox as well as that one did when it was the only proof asked for.
        subscriptions.resubscribe(session, tokens.make("unsubscribe", reader.id, reader.email),
                                  consent_given=bool(consent), **client(request))
    except subscriptions.SubscriptionError as exc:
        session.rollback()
        return _data_page(request, session, reader, token, status=422,
                          errors={"consent": subscriptions.reader_message(exc)})
    session.commit()
    prefs = tokens.make("preferences", reader.id, reader.email)
    return _private(message(
        request, N_("Welcome back"),
        N_("You're subscribed again, with the topics and frequency you had before."),
        link={"url": f"/preferences/{prefs}", "label": N_("Change preferences")},
        locale=request_locale(request, reader.locale)))
