"""The sign-up box news sites put under their articles: /embed/subscribe in an <iframe>, and
/embed.js, which sizes each such frame on the site's page to the box's content.

The box is the sign-up form made small, not a second form: a post takes the same path as
POST /subscribe (pages.take_sign_up: rate limit, form token, honeypot, minimum seconds,
double opt-in, one answer whatever the address), and answers inside the box with compact
templates. Which sites may frame it is EMBED_ORIGINS (newsletter.web.hardening).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from newsletter import tokens
from newsletter.config import get_settings
from newsletter.models import Topic
from newsletter.newsroom.topics import live_by_slug, offered
from newsletter.web.deps import SessionDep, page, request_locale, templates
from newsletter.web.pages import (
    FREQUENCY_LABELS,
    SignUpAnswers,
    take_sign_up,
)

router = APIRouter()
# The topic slugs of ?topics= that are looked up: an article has a handful. The rest of a
# longer list is somebody else's input and costs us nothing.
MAX_BOX_TOPICS = 20
# How long browsers may keep /embed.js: a change to it reaches every site within this.
SCRIPT_MAX_AGE_S = 3600


def asked_topics(request: Request) -> list[str]:
    """The slugs the page framing the box names (?topics=syria,russia), as given."""
    raw = request.query_params.get("topics", "")[:MAX_BOX_TOPICS * 65]
    return [part.strip() for part in raw.split(",") if part.strip()][:MAX_BOX_TOPICS]


def box_path(slugs: list[str]) -> str:
    """The box's address for these topics (what the form posts to, and the snippet names)."""
    return "/embed/subscribe" + (f"?topics={quote(','.join(slugs), safe=',')}" if slugs else "")


def _sections(session: Session, article: list[Topic]) -> list[tuple[str, list[Topic]]]:
    """The other live topics, by group: the box shows them folded under the article's."""
    shown = {topic.id for topic in article}
    sections = [(group, [t for t in members if t.id not in shown])
                for group, members in offered(session)]
    return [(group, members) for group, members in sections if members]


def box_form(request: Request, session: Session, form: dict, errors: dict,
             status: int = 200) -> HTMLResponse:
    """The box: the article's live topics (unknown or retired slugs left out) first and
    ticked when first shown, every other topic folded away below them."""
    article = live_by_slug(session, asked_topics(request))
    others = _sections(session, article)
    article_slugs = {t.slug for t in article}
    other_chosen = any(slug not in article_slugs for slug in form["topics"])
    return page(request, "embed/box.html", status, article_topics=article, others=others,
                others_open=other_chosen or not article, form=form, errors=errors,
                consent_text=get_settings().consent_text, frequencies=FREQUENCY_LABELS,
                form_token=tokens.make_form_token(),
                action=box_path([t.slug for t in article]))


def box_check_inbox(request: Request) -> HTMLResponse:
    # The same for every address, as the page's (no enumeration), and rendered once per
    # language.
    return _answered(request, "check_inbox", 200)


def box_too_many(request: Request) -> HTMLResponse:
    return _answered(request, "too_many", 429)


def _answered(request: Request, kind: str, status: int) -> HTMLResponse:
    response = HTMLResponse(_answer(kind, get_settings().site_name, request_locale(request)),
                            status)
    response.headers.append("Vary", "Accept-Language")
    return response


@lru_cache(maxsize=16)
def _answer(kind: str, site_name: str, locale: str) -> str:
    return templates.get_template("embed/answer.html").render(kind=kind, site_name=site_name,
                                                             locale=locale)


BOX_ANSWERS = SignUpAnswers(box_form, box_check_inbox, box_too_many, "embed")


@router.get("/embed/subscribe", response_class=HTMLResponse)
def box(request: Request, session: SessionDep) -> HTMLResponse:
    slugs = [t.slug for t in live_by_slug(session, asked_topics(request))]
    form = {"email": "", "topics": slugs, "frequency": "weekly", "consent": False}
    return box_form(request, session, form, {})


@router.post("/embed/subscribe", response_class=HTMLResponse)
async def box_sign_up(request: Request) -> HTMLResponse:
    return await take_sign_up(request, BOX_ANSWERS)


@router.get("/embed.js", include_in_schema=False)
def sizing_script() -> Response:
    """The script a site puts beside its frames; it trusts messages from our origin only."""
    return Response(_script(site_origin()), media_type="text/javascript",
                    headers={"Cache-Control": f"public, max-age={SCRIPT_MAX_AGE_S}"})


def site_origin() -> str:
    """Our public origin (BASE_URL's scheme, host and port): what the box's messages
    come from in the site's page."""
    parts = urlsplit(get_settings().base_url)
    return f"{parts.scheme}://{parts.netloc}"


@lru_cache(maxsize=2)
def _script(origin: str) -> str:
    return templates.get_template("embed/embed.js").render(origin=origin)


def snippet(slugs: list[str]) -> str:
    """What a site pastes into an article page to show the box for these topics."""
    base = get_settings().base_url.rstrip("/")
    return templates.get_template("embed/snippet.html").render(
        src=base + box_path(slugs), script=f"{base}/embed.js").strip()
