"""Reader pages: subscribe, confirm, preferences, unsubscribe, the edition archive.

GET never changes state. Posts from our own forms carry a signed CSRF token bound to the
reader; the RFC 8058 one-click unsubscribe is exempt (mailbox providers post it blind).
A bad, expired or foreign link raises tokens.InvalidToken, which the app's one handler
answers with the "link is not valid" page (400) after the session has rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from newsletter import db, i18n, langtags, tokens, zones
from newsletter.config import N_, get_settings
from newsletter.editions.archive import edition_archive
from newsletter.metrics import SUBSCRIBE_REQUESTS, UNSUBSCRIBES
from newsletter.models import Reader, Topic, utcnow
from newsletter.newsroom.topics import offered
from newsletter.readers import notices, privacy, reasons, subscriptions
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
UNSUBSCRIBE_REASONS = list(reasons.labels())  # marked N_ in readers/reasons.py
# The consent history's words (privacy.consent_receipt gives the stored ones).
CONSENT_ACTIONS = {"requested": N_("Requested"), "confirmed": N_("Confirmed"),
                   "changed": N_("Changed"), "withdrawn": N_("Withdrawn")}
CONSENT_WAYS = {"form": N_("Sign-up form"), "link": N_("Link in an email"),
                "one-click": N_("One-click unsubscribe"), "email": N_("Email"),
                "web": N_("Web page"), "preferences": N_("Preference centre"),
                "resubscribe": N_("Subscribing again"), "import": N_("Import"),
                "api": N_("API"), "embed": N_("Sign-up box"),
                "console": N_("Newsroom console"), "mailbox": N_("Bounce or complaint"),
                "webhook": N_("Bounce or complaint")}

Text = Annotated[str, Form(max_length=320)]


def topic_groups(session: Session) -> list[tuple[str, list[Topic]]]:
    """The live topics editors offer, by group (a fieldset each), in their order."""
    return offered(session)


def subscribe_form(request: Request, session: Session, form: dict, errors: dict,
                   status: int = 200) -> HTMLResponse:
    form.setdefault("languages", [])
    return page(request, "subscribe.html", status, groups=topic_groups(session), form=form,
                errors=errors, consent_text=get_settings().consent_text, frequencies=FREQUENCY_LABELS,
                form_token=tokens.make_form_token(), site_languages=get_settings().languages)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@router.get("/subscribe", response_class=HTMLResponse)
def subscribe_page(request: Request, session: SessionDep) -> HTMLResponse:
    # The stories a reader gets are, unless they say otherwise, in the form's language.
    form = {"email": "", "topics": [], "frequency": "weekly", "consent": False,
            "languages": [request_locale(request)]}
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


def _too_many(request: Request) -> HTMLResponse:
    return message(request, N_("Too many attempts"),
                   N_("Please wait a few minutes before trying again."), status=429)


@dataclass(frozen=True)
class SignUpAnswers:
    """What a sign-up form answers with, wherever it is shown (this page, or the box other
    sites frame, newsletter.web.embed): the form again, as sent, with what to fix; "check
    your inbox"; "too many attempts". Both take one path (take_sign_up); only these differ."""

    form: Callable[[Request, Session, dict, dict, int], HTMLResponse]
    check_inbox: Callable[[Request], HTMLResponse]
    too_many: Callable[[Request], HTMLResponse]
    source: str  # where the reader signed up, for the reader row and the consent ledger


PAGE_ANSWERS = SignUpAnswers(subscribe_form, check_inbox, _too_many, "form")


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request) -> HTMLResponse:
    return await take_sign_up(request, PAGE_ANSWERS)


async def take_sign_up(request: Request, answers: SignUpAnswers) -> HTMLResponse:
    """A posted sign-up form: read, checked (rate limit, form token, honeypot, minimum
    seconds) and, when it passes, a pending reader who gets the confirmation email."""
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
            "frequency": _one(fields, "frequency"), "consent": bool(_one(fields, "consent")),
            # The browser's zone, from a hidden field our script fills: one zoneinfo does
            # not know (or no script ran) is the site's, silently. The reader never saw the
            # field, so an error about it would help nobody.
            "timezone": zones.zone_or_none(_one(fields, "timezone")),
            "languages": fields.get("languages", [])}
    if unreadable:
        return await loop.run_in_executor(_subscribers, _unreadable, request, form, answers)
    return await loop.run_in_executor(_subscribers, _subscribe, request, form,
                                      _one(fields, "website"), _one(fields, "form_token"),
                                      answers)


# The threads that run subscribes' database work: as many as a process's pool has database
# connections, since a thread more would only wait for one.
# A plain executor, not run_in_threadpool: anyio's hand-over to its threads held 8 % of the
# web process's GIL samples under the subscribe benchmark, this one under 1 % (py-spy).
_subscribers = ThreadPoolExecutor(max_workers=db.POOL_SIZE + db.POOL_OVERFLOW,
                                  thread_name_prefix="subscribe")


# The longest value each field of the form takes (an address is at most 320 octets).
_FIELD_LIMITS = {"email": 320, "topics": 100, "frequency": 16, "consent": 8, "website": 200,
                 "form_token": 200, "languages": 64, "languages_shown": 8}


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


def _unreadable(request: Request, form: dict, answers: SignUpAnswers) -> HTMLResponse:
    SUBSCRIBE_REQUESTS.labels("invalid").inc()
    with request_session() as session:
        return answers.form(request, session, {**form, "email": form["email"][:320]},
                            {"form": N_("Part of this form is longer than it can be. "
                                        "Please check your choices and send it again.")},
                            422)


_CHECK_AND_SEND = N_("Please check your choices and send the form again.")
_SENT_ALREADY = N_("This form was sent already. If you meant to send it again, please check "
                   "your choices and send it once more.")


def _subscribe(request: Request, form: dict, website: str, form_token: str,
               answers: SignUpAnswers) -> HTMLResponse:
    settings = get_settings()
    who = client(request)
    if not ratelimit.allow("subscribe", who["ip"] or "?"):
        SUBSCRIBE_REQUESTS.labels("rate_limited").inc()
        return answers.too_many(request)
    with request_session() as session:
        max_age = settings.form_max_age_hours * 3600
        try:
            nonce, age = tokens.read_form_token(form_token, max_age)
        except tokens.InvalidToken:
            SUBSCRIBE_REQUESTS.labels("form_expired").inc()
            return answers.form(request, session, form,
                                {"form": N_("This form has expired. Please check your "
                                            "choices and send it again.")}, 422)
        if website:
            SUBSCRIBE_REQUESTS.labels("bot").inc()
            # A bot: answer as if all went well, store nothing.
            return answers.check_inbox(request)
        if age < settings.form_min_seconds:
            # Faster than people type; but a browser that filled the form in is as quick,
            # and its reader must not be lost: the form again, as they sent it.
            SUBSCRIBE_REQUESTS.labels("too_fast").inc()
            return answers.form(request, session, form, {"form": _CHECK_AND_SEND}, 422)
        expires = utcnow() + timedelta(seconds=max_age - age + 60)
        if not subscriptions.spend_form_nonce(session, nonce, expires):
            session.rollback()
            SUBSCRIBE_REQUESTS.labels("form_replayed").inc()
            return answers.form(request, session, form, {"form": _SENT_ALREADY}, 422)
        fields = form["email"], form["topics"], form["frequency"]
        try:
            subscriptions.subscribe(session, *fields, consent_given=form["consent"],
                                    source=answers.source, timezone=form["timezone"],
                                    locale=request_locale(request),
                                    languages=form["languages"], **who)
        except subscriptions.SubscriptionError as exc:
            # subscribe() checks its input before it writes anything, so a bad form costs a
            # second look here (to show every problem at once) and a good one only one.
            # Rolled back with the nonce: a refused form changes nothing, and what it could
            # still be posted with is only another refusal or one sign-up.
            session.rollback()
            if errors := subscriptions.form_errors(session, *fields, form["consent"],
                                                   form["languages"]):
                SUBSCRIBE_REQUESTS.labels("invalid").inc()
                return answers.form(request, session, form, errors, 422)
            return answers.form(request, session, form,
                                {exc.field or "email": subscriptions.reader_message(exc)}, 422)
        session.commit()
    SUBSCRIBE_REQUESTS.labels("accepted").inc()
    return answers.check_inbox(request)


# ---------------------------------------------------------------- confirm

@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> HTMLResponse:
    # Link scanners open every URL in an email; a GET that confirmed would let them
    # subscribe whoever a stranger typed into the form.
    max_age = get_settings().confirm_max_age_days * 86400
    try:
        data, _ = tokens.read("confirm", token, max_age_s=max_age)
    except tokens.ExpiredToken:
        return _action(request, N_("This link has expired"),
                       [N_("Confirmation links work for 7 days. We can send you a new one.")],
                       f"/confirm/{token}/resend", N_("Send me a new link"), 400)
    except tokens.InvalidToken as exc:
        return invalid_link(request, exc)
    return _action(request, N_("Confirm your subscription"),
                   [N_("One more step: press the button to start receiving the newsletter.")],
                   f"/confirm/{token}", N_("Confirm my subscription"))


def _action(request: Request, heading: str, lines: list[str], action: str, button: str,
            status: int = 200) -> HTMLResponse:
    """A page of one button (a GET that would change state asks for a POST), translated;
    the post keeps the page's language."""
    locale = request_locale(request)
    return page(request, "action.html", status, locale=locale,
                heading=i18n.resolve(locale, heading),
                lines=[i18n.resolve(locale, line) for line in lines],
                action=f"{action}?lang={locale}", button=i18n.resolve(locale, button))


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    reader = subscriptions.confirm(session, token, **client(request))
    session.commit()
    prefs = tokens.make("preferences", reader.id, reader.email)
    return message(request, N_("You're subscribed"),
                   N_("Thank you. Your first email arrives with the next edition on your topics."),
                   link={"url": f"/preferences/{prefs}", "label": N_("Choose topics and frequency")},
                   locale=request_locale(request, reader.locale))


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
                     status: int = 200, locale: str | None = None) -> HTMLResponse:
    locale = locale or request_locale(request, reader.locale)
    form = form or {"topics": [t.slug for t in reader.topics], "frequency": reader.frequency,
                    "pause": "", "timezone": reader.timezone or get_settings().timezone}
    form.setdefault("locale", i18n.locale_of(reader.locale))
    # Readers from before languages read them all.
    form.setdefault("languages", list(langtags.split(reader.languages))
                    or list(get_settings().languages))
    receipt = privacy.consent_receipt(session, reader)
    return page(request, "preferences.html", status, reader=reader, token=token, form=form,
                errors=errors or {}, saved=saved, groups=topic_groups(session),
                retired=[t for t in reader.topics if t.retired_at is not None],
                live_followed=any(t.retired_at is None for t in reader.topics),
                frequencies=FREQUENCY_LABELS, pauses=PAUSE_LABELS, csrf=_csrf(reader),
                history=receipt["events"], link_lifetime=privacy.data_link_lifetime(locale),
                consent_actions=CONSENT_ACTIONS, consent_ways=CONSENT_WAYS, locale=locale,
                click_tracking=get_settings().click_tracking,
                zone_groups=zones.choices_with(form["timezone"]),
                site_languages=get_settings().languages)


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
    timezone: Annotated[str | None, Form(max_length=zones.MAX_LENGTH)] = None,
    locale: Annotated[str, Form(max_length=35)] = "",
    languages: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI form default
    languages_shown: Annotated[str, Form(max_length=8)] = "",
) -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "preferences", token)
    form = {"topics": topics, "frequency": frequency, "pause": pause,
            "timezone": timezone or reader.timezone or get_settings().timezone,
            "locale": i18n.usable(locale) or i18n.locale_of(reader.locale),
            "languages": languages}
    # A form that showed the languages (none ticked is a choice to correct); one that did not
    # (an older page) leaves them as they are.
    reads = [v[:35] for v in languages[:20]] if languages_shown else None
    if not _csrf_ok(reader, csrf):
        return preferences_form(request, session, reader, token, form=form, status=403,
                                errors={"form": N_("This page is out of date. Please reload "
                                                   "it and make your changes again.")})
    # An unsubscribed reader's choices are kept here, but subscribing again takes the link
    # we email them (this page's link may be in a forwarded email).
    try:
        subscriptions.change_preferences(session, reader, topics=topics, frequency=frequency,
                                         pause=pause, timezone=timezone, languages=reads,
                                         **client(request))
    except subscriptions.SubscriptionError as exc:
        session.rollback()
        session.refresh(reader)
        return preferences_form(request, session, reader, token, form=form,
                                errors={exc.field or "form": subscriptions.reader_message(exc)},
                                status=422)
    changed_language = i18n.usable(locale) and locale != reader.locale
    if changed_language:  # a language we do not show is no choice: kept as it was
        reader.locale = i18n.usable(locale)
    session.commit()
    # The answer in the language just chosen, not the page's old one.
    return preferences_form(request, session, reader, token, saved=True,
                            locale=reader.locale if changed_language else None)


def link_emailed(request: Request, purpose: str, stored_locale: str | None = None
                 ) -> HTMLResponse:
    """The answer to every ask for a data link: the link goes to the mailbox, never the page.
    ``purpose`` is one of PURPOSES."""
    locale = request_locale(request, stored_locale)
    return message(
        request, N_("We've emailed you a link"),
        i18n.later(N_("To %(purpose)s, use the link we have sent to the address this "
                      "newsletter goes to. It works for %(lifetime)s."),
                   purpose=i18n.resolve(locale, purpose),
                   lifetime=privacy.data_link_lifetime(locale)),
        N_("We send it by email so that someone who was forwarded one of our newsletters "
           "cannot read or delete your data. If it has not arrived in a few minutes, check "
           "your spam folder or ask again."), locale=locale)


# What a data link is asked for, as link_emailed says it ("To …, use the link").
TO_GET_DATA_OR_RESUBSCRIBE = N_("download or delete your data, or subscribe again")
TO_DELETE = N_("delete your data")
TO_RESUBSCRIBE = N_("subscribe again")


def _ask_for_link(request: Request, session: Session, reader: Reader, token: str, csrf: str,
                  purpose: str) -> HTMLResponse:
    if not _csrf_ok(reader, csrf):
        return preferences_form(request, session, reader, token, status=403, errors={
            "form": N_("This page is out of date. Please reload it and try again.")})
    privacy.request_data_link(session, reader)
    session.commit()
    return link_emailed(request, purpose, reader.locale)


@router.post("/preferences/{token}/data-link", response_class=HTMLResponse)
def data_link(request: Request, token: str, session: SessionDep,
              csrf: Annotated[str, Form(max_length=300)] = "") -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "preferences", token)
    return _ask_for_link(request, session, reader, token, csrf, TO_GET_DATA_OR_RESUBSCRIBE)


def _data_by_email(request: Request, session: Session, token: str) -> HTMLResponse:
    # Links from before data links existed, or typed in: no data in the answer, only the
    # way to ask for it by email.
    reader = subscriptions.reader_from_token(session, "preferences", token)
    locale = request_locale(request, reader.locale)
    return page(request, "data_link.html", 403, token=token, csrf=_csrf(reader), locale=locale,
                link_lifetime=privacy.data_link_lifetime(locale))


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
    return _ask_for_link(request, session, reader, token, csrf, TO_DELETE)


# ---------------------------------------------------------------- unsubscribe

@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    reader = subscriptions.reader_from_token(session, "unsubscribe", token)
    prefs = tokens.make("preferences", reader.id, reader.email)
    return page(request, "unsubscribe.html", token=token, reasons=UNSUBSCRIBE_REASONS,
                preferences_url=f"/preferences/{prefs}", email=reader.email,
                locale=request_locale(request, reader.locale))


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    # RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click", urlencoded or
    # multipart, with no cookies; answer 200 without a redirect.
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    chosen = [r for r in form.getlist("reason") if isinstance(r, str) and r.strip()]
    with db.session_scope() as session:
        method = "one-click" if one_click else "link"
        reader = subscriptions.unsubscribe(
            session, token, method=method,
            reason=reasons.SEPARATOR.join(chosen)[:500] or None, **client(request))
        prefs = tokens.make("preferences", reader.id, reader.email)
        locale = request_locale(request, reader.locale)
    UNSUBSCRIBES.labels(method).inc()
    return page(request, "unsubscribed.html", token=token, consent_text=get_settings().consent_text,
                preferences_url=f"/preferences/{prefs}", errors={}, locale=locale)


@router.post("/resubscribe/{token}", response_class=HTMLResponse)
def resubscribe(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    # The unsubscribe link is in every email, forwarded ones too: subscribing again takes
    # the link we email to the address (privacy.request_data_link).
    reader = subscriptions.reader_from_token(session, "unsubscribe", token)
    privacy.request_data_link(session, reader)
    session.commit()
    return link_emailed(request, TO_RESUBSCRIBE, reader.locale)


# ---------------------------------------------------------------- web versions

@router.get("/editions/{edition_id}", response_class=HTMLResponse)
def edition_page(request: Request, edition_id: int, session: SessionDep) -> HTMLResponse:
    archive = edition_archive(session, edition_id) if 0 < edition_id <= MAX_ROW_ID else None
    if archive is None:
        return message(request, N_("Edition not found"),
                       N_("This edition does not exist or has not been sent yet."), status=404)
    return page(request, "edition.html", archive=archive)


@router.get("/emails/{token}", response_class=HTMLResponse)
def email_in_browser(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    data, _ = tokens.read("view", token)
    reader = subscriptions.reader_from_token(session, "view", token)
    rendered = notices.render_for(str(data.get("t")), reader)
    return HTMLResponse(rendered.html)
