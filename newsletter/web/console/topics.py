"""/admin/topics: what readers may follow. Editors and admins add, edit, retire (after a
page that says whom it affects) and bring back topics, and turn the tags no topic covers yet
into topics or add them to one. Every change goes through newsletter.newsroom.topics and is
noted in the audit log (``topic.change``, ``topic:<slug>``) in the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import i18n
from newsletter.errors import TopicError
from newsletter.newsroom import topics
from newsletter.web.api_topics import record_change
from newsletter.web.console.auth import ConsoleUser, CurrentEditor, console_router, render
from newsletter.web.console.pagination import MAX_PAGE, PageNumber, Pages
from newsletter.web.deps import SessionDep, local_time

router = console_router()
Slug = Annotated[str, Path(max_length=64)]
Text = Annotated[str, Form(max_length=2000)]
# Up to topics.MAX_TAGS tags of up to 128 characters, with their commas.
TagList = Annotated[str, Form(max_length=topics.MAX_TAGS * 130)]
Search = Annotated[str, Query(max_length=128)]
# A site has a few dozen topics and thousands of tags: more topics than tags on a page.
TOPICS_PER_PAGE, TAGS_PER_PAGE = 50, 25
DONE = {"added": "was added: readers can follow it now.", "saved": "was saved.",
        "retired": "was retired: it is no longer offered and delivers nothing.",
        "restored": "is offered again; its followers get it as before.",
        "made": "was made from its tag: readers can follow it now.",
        "covered": "now covers the tag: its stories go to the topic's readers."}


def _other_languages() -> list[dict[str, str]]:
    """The languages a topic's name is translated into here: those the site shows besides
    its own (LANGUAGE's is the topic's name)."""
    return [{"lang": lang, "name": i18n.language_name(lang), "dir": i18n.direction(lang)}
            for lang in i18n.languages() if lang != i18n.site_language()]


async def _posted_names(request: Request) -> dict[str, str]:
    """The names in other languages from the form (``name_<lang>``), one per shipped
    language: the list of fields follows LANGUAGES, so it is read from the form itself."""
    form = await request.form()  # parsed once: FastAPI's Form parameters reuse it
    names = {}
    for lang in (item["lang"] for item in _other_languages()):
        value = form.get(f"name_{lang}")
        names[lang] = value[:200] if isinstance(value, str) else ""
    return names


def _split(tags: str) -> list[str]:
    return [t.strip() for t in tags.split(",") if t.strip()]


def _field(message: str) -> str:
    """The form field a TopicError is about (its message names it)."""
    for word, field in (("name in", "names"), ("tag", "tags"), ("description", "description"),
                        ("group", "group"), ("position", "position")):
        if word in message:
            return field
    return "name"


def _number(text: str) -> int:
    """A page number sent back by a form; anything else is the first page."""
    return int(text) if text.isdigit() and 0 < int(text) <= MAX_PAGE else 1


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _done(request: Request, session) -> str | None:
    what = DONE.get(request.query_params.get("done", ""))
    shown = what and topics.snapshot(session, request.query_params.get("topic", ""))
    return f"“{shown['name']}” {what}" if shown else None


def _back(done: str, slug: str, **keep: str) -> RedirectResponse:
    """To the list, saying what was done; a tag's action keeps the tag list's search and
    page, and lands on it."""
    query = urlencode({"done": done, "topic": slug, **{k: v for k, v in keep.items() if v}})
    # Explicit: a redirect without one would keep the form's (#add) and hide the notice.
    anchor = "#tags" if keep else "#main"
    return RedirectResponse(f"/admin/topics?{query}{anchor}", 303)


def _lists(numbers: dict[str, int], q: str, totals: dict[str, int]) -> dict[str, Pages]:
    """The page's three lists, each paged by its own parameter; a list's links keep the
    others' pages and the tag search."""
    per_page = {"page": TOPICS_PER_PAGE, "retired_page": TOPICS_PER_PAGE,
                "tags_page": TAGS_PER_PAGE}
    labels = {"page": "Topic pages", "retired_page": "Retired topic pages",
              "tags_page": "Tag pages"}
    return {key: Pages(number, totals[key], per_page[key], (("q", q), *(
        (other, str(n)) for other, n in numbers.items() if other != key)), key=key,
        label=labels[key], words=("Previous", "Next")) for key, number in numbers.items()}


def _overview(request: Request, session, user: ConsoleUser, status: int = 200, *,
              page: int = 1, retired_page: int = 1, q: str = "", tags_page: int = 1,
              **context: Any) -> HTMLResponse:
    lists = _lists({"page": page, "retired_page": retired_page, "tags_page": tags_page}, q, {
        "page": topics.count(session), "retired_page": topics.count(session, retired=True),
        "tags_page": topics.count_uncovered(session, q)})
    live, retired, tags = lists["page"], lists["retired_page"], lists["tags_page"]
    retired_now = topics.page(session, retired=True, limit=retired.per_page,
                              offset=retired.offset)
    for topic in retired_now:
        topic["retired_on"] = local_time(datetime.fromisoformat(topic["retired_at"]), "%Y-%m-%d")
    sections = topics.offered(session)
    return render(
        request, user, "topics.html", status, section="topics", pages=live, retired_pages=retired,
        tag_pages=tags, q=q, topics=topics.page(session, limit=live.per_page, offset=live.offset),
        retired=retired_now, tags=topics.uncovered_tags(session, q, tags.per_page, tags.offset),
        sections=sections, groups=[g for g, _ in sections if g],
        done=_done(request, session), **context)


@router.get("/topics", response_class=HTMLResponse)
def topics_page(request: Request, session: SessionDep, user: CurrentEditor,
                page: PageNumber = 1, retired_page: PageNumber = 1, q: Search = "",
                tags_page: PageNumber = 1) -> HTMLResponse:
    return _overview(request, session, user, page=page, retired_page=retired_page, q=q,
                     tags_page=tags_page, form={}, errors={})


@router.post("/topics", response_class=HTMLResponse)
def add_topic(request: Request, session: SessionDep, user: CurrentEditor, name: Text = "",
              tags: TagList = "", description: Text = "", group: Text = "") -> Response:
    typed = {"name": name, "tags": tags, "description": description, "group": group}
    errors: dict[str, str] = {}
    if (before := topics.snapshot(session, name)) is not None:
        # The API answers a second add with the first topic; a person is told instead.
        errors["name"] = (f"There is already a topic “{before['name']}”: "
                          + ("bring it back from the retired topics below." if before["retired"]
                             else "edit it from the list above."))
    else:
        try:
            topic, _ = topics.create(session, name, tags=_split(tags) or None,
                                     description=description, group=group or None)
        except TopicError as exc:
            session.rollback()
            errors[_field(str(exc))] = _sentence(exc)
    if errors:
        return _overview(request, session, user, 422, form=typed, errors=errors)
    record_change(session, user.actor, None, topic)
    session.commit()
    return _back("added", topic.slug)


def _edit_page(request: Request, session, user: ConsoleUser, slug: str, status: int = 200,
               **context: Any) -> HTMLResponse:
    topic = topics.get(session, slug)
    shown = topics.to_dict(topic, topics.retirement(session, slug).followers)
    return render(request, user, "topic.html", status, section="topics", topic=shown,
                  retired_at=topic.retired_at, languages=_other_languages(),
                  groups=[g for g, _ in topics.offered(session) if g], **context)


@router.get("/topics/{slug}", response_class=HTMLResponse)
def topic_page(request: Request, session: SessionDep, user: CurrentEditor,
               slug: Slug) -> HTMLResponse:
    shown = topics.to_dict(topics.get(session, slug))
    form = {"description": shown["description"], "group": shown["group"] or "",
            "position": str(shown["position"]), "tags": ", ".join(shown["tags"]),
            "names": shown["names"]}
    return _edit_page(request, session, user, slug, form=form, errors={})


@router.post("/topics/{slug}", response_class=HTMLResponse)
def save_topic(request: Request, session: SessionDep, user: CurrentEditor, slug: Slug,
               description: Text = "", group: Text = "", position: Text = "",
               tags: TagList = "",
               names: dict[str, str] = Depends(_posted_names)) -> Response:
    typed = {"description": description, "group": group, "position": position, "tags": tags,
             "names": names}
    before = topics.snapshot(session, slug)
    try:
        try:
            order = int(position.strip())
        except ValueError:
            raise TopicError("the position (order) must be a whole number") from None
        topic = topics.update(session, slug, description=description, group=group or None,
                              position=order, tags=_split(tags), names=names)
    except TopicError as exc:
        session.rollback()
        return _edit_page(request, session, user, slug, 422, form=typed,
                          errors={_field(str(exc)): _sentence(exc)})
    record_change(session, user.actor, before, topic)
    session.commit()
    return _back("saved", topic.slug)


@router.get("/topics/{slug}/retire", response_class=HTMLResponse)
def confirm_retire(request: Request, session: SessionDep, user: CurrentEditor,
                   slug: Slug) -> HTMLResponse:
    return render(request, user, "topic_retire.html", section="topics",
                  topic=topics.to_dict(topics.get(session, slug)),
                  counts=topics.retirement(session, slug))


@router.post("/topics/{slug}/retire")
def retire_topic(session: SessionDep, user: CurrentEditor, slug: Slug) -> Response:
    before = topics.snapshot(session, slug)
    done = topics.retire(session, slug)
    record_change(session, user.actor, before, topics.get(session, slug),
                  followers=done.followers, follow_nothing_else=done.only_topic)
    session.commit()
    return _back("retired", done.slug)


@router.post("/topics/{slug}/restore")
def restore_topic(session: SessionDep, user: CurrentEditor, slug: Slug) -> Response:
    before = topics.snapshot(session, slug)
    topic = topics.restore(session, slug)
    record_change(session, user.actor, before, topic)
    session.commit()
    return _back("restored", topic.slug)


@router.post("/topics/tags/{tag}/new", response_class=HTMLResponse)
def topic_of_tag(request: Request, session: SessionDep, user: CurrentEditor, tag: Slug,
                 q: Text = "", tags_page: Text = "") -> Response:
    """One step: a topic named as the tag, covering only it."""
    found = topics.get_tag(session, tag)
    if (taken := topics.snapshot(session, found.name)) is not None:
        return _overview(request, session, user, 409, q=q, tags_page=_number(tags_page),
                         form={}, errors={}, problem=(
            f"There is already a topic “{taken['name']}”: add “{found.name}” to it "
            "(or to another topic) instead."))
    topic, _ = topics.create(session, found.name, tags=[found.slug])
    record_change(session, user.actor, None, topic)
    session.commit()
    return _back("made", topic.slug, q=q, tags_page=tags_page)


@router.post("/topics/tags/{tag}/cover")
def cover_tag(session: SessionDep, user: CurrentEditor, tag: Slug, topic: Text = "",
              q: Text = "", tags_page: Text = "") -> Response:
    """Add the tag to the topic chosen beside it."""
    before = topics.snapshot(session, topic)
    if before is None:
        raise TopicError("choose the topic to add the tag to")
    changed = topics.cover(session, topic, tag)
    record_change(session, user.actor, before, changed)
    session.commit()
    return _back("covered", changed.slug, q=q, tags_page=tags_page)
