"""Reader pages: subscribe, confirm, preferences, unsubscribe, the edition archive.

GET never changes state. Posts from our own forms carry a signed CSRF token bound to the
reader; the RFC 8058 one-click unsubscribe is exempt (mailbox providers post it blind).
A bad, expired or foreign link raises tokens.InvalidToken, which the app's one handler
answers with the "link is not valid" page (400) after the session has rolled back.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from newsletter import db, i18n, tokens
from newsletter.config import CONSENT_TEXT, N_, get_settings
from newsletter.editions.archive import edition_archive
from newsletter.metrics import SUBSCRIBE_REQUESTS, UNSUBSCRIBES
from newsletter.models import Reader, Topic, utcnow
from newsletter.newsroom.topics import offered
from newsletter.readers import notices, privacy, subscriptions
from newsletter.web import ratelimit
from newsletter.web.deps import (
    MAX_ROW_ID,
    SessionDep,
    client,
    invalid_link,
    message,
    page,
    request_locale,
    request_session,
    templates,
)

router = APIRouter()
# Marked for the catalogues (N_) and translated where the templates show them (_()).
FREQUENCY_LABELS = [("immediate", N_("As it happens"), N_("An email shortly after each story")),
                    ("daily", N_("Daily digest"), N_("One email each morning")),
                    ("weekly", N_("Weekly digest"), N_("One email each week"))]
PAUSE_LABELS = [("", N_("Keep sending")), ("1w", N_("Pause for 1 week")),
                ("4w", N_("Pause for 4 weeks")), ("12w", N_("Pause for 12 weeks"))]
UNSUBSCRIBE_REASONS = [N_("Too many emails"), N_("Not relevant to me any more"),
                       N_("I never signed up"), N_("I get the news elsewhere")]

Text = Annotated[str, Form(max_length=320)]


def topic_groups(session: Session) -> list[tuple[str, list[Topic]]]:
    """The live topics editors offer, by group (a fieldset each), in their order."""
    return offered(session)


def subscribe_form(request: Request, session: Session, form: dict, errors: dict,
                   status: int = 200) -> HTMLResponse:
    return page(request, "subscribe.html", status, groups=topic_groups(session), form=form,
                errors=errors, consent_text=CONSENT_TEXT, frequencies=FREQUENCY_LABELS,
                form_token=tokens.make_form_token())


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@router.get("/subscribe", response_class=HTMLResponse)
def subscribe_page(request: Request, session: SessionDep) -> HTMLResponse:
    form = {"email": "", "topics": [], "frequency": "weekly", "consent": False}
    return subscribe_form(request, session, form, {})


def check_inbox(request: Request) -> HTMLResponse:
    # One answer for new, pending, active and unsubscribed addresses: the page must not
    # tell a stranger whether somebody reads us.
    response = HTMLResponse(_check_inbox_page(get_settings().site_name, request_locale(request)))
    response.headers.append("Vary", "Accept-Language")
    return response


@lru_cache(maxsize=16)
def _check_inbox_page(site_name: str, locale: str) -> str:
    # The same page for every subscribe in a language (message.html reads nothing of the
    # request): rendered once per process and language, not 300 times a second when a
    # story spreads.
    lines = (N_("If this address can receive our newsletter, an email is on its way with a "
                "link to confirm your subscription."),
             N_("Nothing is sent until you confirm. The link works for 7 days."))
    return templates.get_template("message.html").render(
        site_name=site_name, locale=locale, language_links=[], link=None,
        heading=i18n.resolve(locale, N_("Check your inbox")),
        lines=[i18n.resolve(locale, line) for line in lines])


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request) -> HTMLResponse:
    # The form is read here, on the event loop; the database work is one trip to a thread.
    # A sync route with a session dependency made three (open the session, the route, close
    # it), and under load each trip waited for a thread and the GIL to be handed over:
    # measured with 50 clients, 1 trip against 3 (bench/RESULTS.md, subscribe).
    loop = asyncio.get_running_loop()
    try:
        fields = await _posted(request)
    except ValueError:  # more fields than any form of ours has
        fields = {}
        unreadable = True
    else:
        unreadable = any(len(v) > limit for name, limit in _FIELD_LIMITS.items()
                         for v in fields.get(name, ()))
    form = {"email": _one(fields, "email"), "topics": fields.get("topics", []),
            "frequency": _one(fields, "frequency"), "consent": bool(_one(fields, "consent"))}
    if unreadable:
        return await loop.run_in_executor(_subscribers, _unreadable, request, form)
    return await loop.run_in_executor(_subscribers, _subscribe, request, form,
                                      _one(fields, "website"), _one(fields, "form_token"))


# The threads that run subscribes' database work: as many as a process's pool has database
# connections, since a thread more would only wait for one.
# A plain executor, not run_in_threadpool: anyio's hand-over to its threads held 8 % of the
# web process's GIL samples under the subscribe benchmark, this one under 1 % (py-spy).
_subscribers = ThreadPoolExecutor(max_workers=db.POOL_SIZE + db.POOL_OVERFLOW,
                                  thread_name_prefix="subscribe")


# The longest value each field of the form takes (an address is at most 320 octets).
_FIELD_LIMITS = {"email": 320, "topics": 100, "frequency": 16, "consent": 8, "website": 200,
                 "form_token": 200}


async def _posted(request: Request) -> dict[str, list[str]]:
    """The posted fields, each as its list of values (files are not ours: left out); raises
    ValueError when Starlette's parser refuses the body (more than 1,000 fields)."""
    try:
        posted = await request.form()
    except HTTPException as exc:
        raise ValueError(exc.detail) from None
    fields: dict[str, list[str]] = {}
    for name, value in posted.multi_items():
        if isinstance(value, str):
            fields.setdefault(name, []).append(value)
    return fields


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[-1] if values else ""  # as a form parameter: the last one given


def _unreadable(request: Request, form: dict) -> HTMLResponse:
    SUBSCRIBE_REQUESTS.labels("invalid").inc()
    with request_session() as session:
        return subscribe_form(request, session, {**form, "email": form["email"][:320]},
                              {"form": "Part of this form is longer than it can be. Please "
                                       "check your choices and send it again."}, 422)


_CHECK_AND_SEND = "Please check your choices and send the form again."
_SENT_ALREADY = ("This form was sent already. If you meant to send it again, please check "
                 "your choices and send it once more.")


def _subscribe(request: Request, form: dict, website: str, form_token: str) -> HTMLResponse:
    settings = get_settings()
    who = client(request)
    if not ratelimit.allow("subscribe", who["ip"] or "?"):
        SUBSCRIBE_REQUESTS.labels("rate_limited").inc()
        return message(request, "Too many attempts",
                       "Please wait a few minutes before trying again.", status=429)
    with request_session() as session:
        max_age = settings.form_max_age_hours * 3600
        try:
            nonce, age = tokens.read_form_token(form_token, max_age)
        except tokens.InvalidToken:
            SUBSCRIBE_REQUESTS.labels("form_expired").inc()
            return subscribe_form(request, session, form,
                                  {"form": "This form has expired. Please check your choices "
                                           "and send it again."}, 422)
        if website:
            SUBSCRIBE_REQUESTS.labels("bot").inc()
            return check_inbox(request)  # a bot: answer as if all went well, store nothing
        if age < settings.form_min_seconds:
            # Faster than people type; but a browser that filled the form in is as quick,
            # and its reader must not be lost: the form again, as they sent it.
            SUBSCRIBE_REQUESTS.labels("too_fast").inc()
            return subscribe_form(request, session, form, {"form": _CHECK_AND_SEND}, 422)
        expires = utcnow() + timedelta(seconds=max_age - age + 60)
        if not subscriptions.spend_form_nonce(session, nonce, expires):
            session.rollback()
            SUBSCRIBE_REQUESTS.labels("form_replayed").inc()
            return subscribe_form(request, session, form, {"form": _SENT_ALREADY}, 422)
        fields = form["email"], form["topics"], form["frequency"]
        try:
            subscriptions.subscribe(session, *fields, consent_given=form["consent"],
                                    source="form", locale=request_locale(request), **who)
        except subscriptions.SubscriptionError as exc:
            # subscribe() checks its input before it writes anything, so a bad form costs a
            # second look here (to show every problem at once) and a good one only one.
            # Rolled back with the nonce: a refused form changes nothing, and what it could
            # still be posted with is only another refusal or one sign-up.
            session.rollback()
            if errors := subscriptions.form_errors(session, *fields, form["consent"]):
                SUBSCRIBE_REQUESTS.labels("invalid").inc()
                return subscribe_form(request, session, form, errors, 422)
            return subscribe_form(request, session, form, {exc.field or "email": str(exc)}, 422)
        session.commit()
    SUBSCRIBE_REQUESTS.labels("accepted").inc()
    return check_inbox(request)


# ---------------------------------------------------------------- confirm

@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> HTMLResponse:
    # Link scanners open every URL in an email; a GET that confirmed would let them
    # subscribe whoever a stranger typed into the form.
    max_age = get_settings().confirm_max_age_days * 86400
    try:
        tokens.read("confirm", token, max_age_s=max_age)
    except tokens.ExpiredToken:
        return page(request, "action.html", 400, heading="This link has expired",
                    lines=["Confirmation links work for 7 days. We can send you a new one."],
                    action=f"/confirm/{token}/resend", button="Send me a new link")
    except tokens.InvalidToken as exc:
        return invalid_link(request, exc)
    return page(request, "action.html", heading="Confirm your subscription",
                lines=["One more step: press the button to start receiving the newsletter."],
                action=f"/confirm/{token}", button="Confirm my subscription")


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    reader = subscriptions.confirm(session, token, **client(request))
    session.commit()
    prefs = tokens.make("preferences", reader.id, reader.email)
    return message(request, "You're subscribed",
                   "Thank you. Your first email arrives with the next edition on your topics.",
                   link={"url": f"/preferences/{prefs}", "label": "Choose topics and frequency"})


@router.post("/confirm/{token}/resend", response_class=HTMLResponse)
def confirm_resend(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    subscriptions.resend_confirmation(session, token)
    session.commit()
    SUBSCRIBE_REQUESTS.labels("accepted").inc()
    return check_inbox(request)


# ---------------------------------------------------------------- preferences

def _csrf(reader: Reader) -> str:
    return tokens.make("csrf", reader.id, reader.email)


def _csrf_ok(reader: Reader, token: str) -> bool:
    try:
        data, _ = tokens.read("csrf", token, max_age_s=86400)
    except tokens.InvalidToken:
        return False
    return data["r"] == reader.id and data["h"] == tokens.email_tag(reader.email)


def preferences_form(request: Request, session: Session, reader: Reader, token: str, *,
                     form: dict | None = None, errors: dict | None = None, saved: bool = False,
                     status: int = 200) -> HTMLResponse:
    form = form or {"topics": [t.slug for t in reader.topics], "frequency": reader.frequency,
                    "pause": ""}
    receipt = privacy.consent_receipt(session, reader)
    return page(request, "preferences.html", status, reader=reader, token=token, form=form,
                errors=errors or {}, saved=saved, groups=topic_groups(session),
                retired=[t for t in reader.topics if t.retired_at is not None],
                live_followed=any(t.retired_at is None for t in reader.topics),
                frequencies=FREQUENCY_LABELS, pauses=PAUSE_LABELS, csrf=_csrf(reader),
                history=receipt["events"], link_lifetime=privacy.data_link_lifetime())


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "preferences", token)
    return preferences_form(request, session, reader, token)


@router.post("/preferences/{token}", response_class=HTMLResponse)
def preferences_save(
    request: Request,
    token: str,
    session: SessionDep,
    topics: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI form default
    frequency: Annotated[str, Form(max_length=16)] = "",
    pause: Annotated[str, Form(max_length=8)] = "",
    csrf: Annotated[str, Form(max_length=300)] = "",
) -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "preferences", token)
    form = {"topics": topics, "frequency": frequency, "pause": pause}
    if not _csrf_ok(reader, csrf):
        return preferences_form(request, session, reader, token, form=form, status=403,
                                errors={"form": "This page is out of date. Please reload it "
                                                "and make your changes again."})
    # An unsubscribed reader's choices are kept here, but subscribing again takes the link
    # we email them (this page's link may be in a forwarded email).
    try:
        subscriptions.change_preferences(session, reader, topics=topics, frequency=frequency,
                                         pause=pause, **client(request))
    except subscriptions.SubscriptionError as exc:
        session.rollback()
        session.refresh(reader)
        return preferences_form(request, session, reader, token, form=form,
                                errors={exc.field or "form": str(exc)}, status=422)
    session.commit()
    return preferences_form(request, session, reader, token, saved=True)


def link_emailed(request: Request, purpose: str) -> HTMLResponse:
    """The answer to every ask for a data link: the link goes to the mailbox, never the page."""
    return message(
        request, "We've emailed you a link",
        f"To {purpose}, use the link we have sent to the address this newsletter goes to. "
        f"It works for {privacy.data_link_lifetime()}.",
        "We send it by email so that someone who was forwarded one of our newsletters "
        "cannot read or delete your data. If it has not arrived in a few minutes, check "
        "your spam folder or ask again.")


def _ask_for_link(request: Request, session: Session, reader: Reader, token: str, csrf: str,
                  purpose: str) -> HTMLResponse:
    if not _csrf_ok(reader, csrf):
        return preferences_form(request, session, reader, token, status=403, errors={
            "form": "This page is out of date. Please reload it and try again."})
    privacy.request_data_link(session, reader)
    session.commit()
    return link_emailed(request, purpose)


@router.post("/preferences/{token}/data-link", response_class=HTMLResponse)
def data_link(request: Request, token: str, session: SessionDep,
              csrf: Annotated[str, Form(max_length=300)] = "") -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "preferences", token)
    return _ask_for_link(request, session, reader, token, csrf,
                         "download or delete your data, or subscribe again")


def _data_by_email(request: Request, session: Session, token: str) -> HTMLResponse:
    # Links from before data links existed, or typed in: no data in the answer, only the
    # way to ask for it by email.
    reader = subscriptions.reader_from_token(session, "preferences", token)
    return page(request, "data_link.html", 403, token=token, csrf=_csrf(reader),
                link_lifetime=privacy.data_link_lifetime())


@router.get("/preferences/{token}/consent.json", response_class=HTMLResponse)
def consent_receipt(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    return _data_by_email(request, session, token)


@router.get("/preferences/{token}/export.json", response_class=HTMLResponse)
def export_mine(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    return _data_by_email(request, session, token)


@router.post("/preferences/{token}/erase", response_class=HTMLResponse)
def erase_mine(request: Request, token: str, session: SessionDep,
               csrf: Annotated[str, Form(max_length=300)] = "") -> HTMLResponse:
    # The form of a page served before data links: it now asks for the link instead.
    reader = subscriptions.reader_from_token(session, "preferences", token)
    return _ask_for_link(request, session, reader, token, csrf, "delete your data")


# ---------------------------------------------------------------- unsubscribe

@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "unsubscribe", token)
    prefs = tokens.make("preferences", reader.id, reader.email)
    return page(request, "unsubscribe.html", token=token, reasons=UNSUBSCRIBE_REASONS,
                preferences_url=f"/preferences/{prefs}", email=reader.email)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    # RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click", urlencoded or
    # multipart, with no cookies; answer 200 without a redirect.
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    reasons = [r for r in form.getlist("reason") if isinstance(r, str) and r.strip()]
    with db.session_scope() as session:
        method = "one-click" if one_click else "link"
        reader = subscriptions.unsubscribe(
            session, token, method=method,
            reason="; ".join(reasons)[:500] or None, **client(request))
        prefs = tokens.make("preferences", reader.id, reader.email)
    UNSUBSCRIBES.labels(method).inc()
    return page(request, "unsubscribed.html", token=token, consent_text=CONSENT_TEXT,
                preferences_url=f"/preferences/{prefs}", errors={})


@router.post("/resubscribe/{token}", response_class=HTMLResponse)
def resubscribe(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    # The unsubscribe link is in every email, forwarded ones too: subscribing again takes
    # the link we email to the address (privacy.request_data_link).
    reader = subscriptions.reader_from_token(session, "unsubscribe", token)
    privacy.request_data_link(session, reader)
    session.commit()
    return link_emailed(request, "subscribe again")


# ---------------------------------------------------------------- web versions

@router.get("/editions/{edition_id}", response_class=HTMLResponse)
def edition_page(request: Request, edition_id: int, session: SessionDep) -> HTMLResponse:
    archive = edition_archive(session, edition_id) if 0 < edition_id <= MAX_ROW_ID else None
    if archive is None:
        return message(request, "Edition not found",
                       "This edition does not exist or has not been sent yet.", status=404)
    return page(request, "edition.html", archive=archive)


@router.get("/emails/{token}", response_class=HTMLResponse)
def email_in_browser(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    data, _ = tokens.read("view", token)
    reader = subscriptions.reader_from_token(session, "view", token)
    rendered = notices.render_for(str(data.get("t")), reader)
    return HTMLResponse(rendered.html)
