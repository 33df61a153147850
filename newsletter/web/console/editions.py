"""/admin/editions: the editions, one edition's report (live while it sends), resume and
requeue; /admin/editions/new: frequency, topics and an editor's note → a dry run → send."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import audit
from newsletter.editions import reconcile, reports, schedule, waves
from newsletter.editions import requests as editions
from newsletter.errors import Conflict, EditionError, EditionNotFound
from newsletter.insight import attribution, click_figures
from newsletter.models import Tag
from newsletter.states import EditionStatus
from newsletter.web.console.auth import ConsoleUser, CurrentEditor, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router()

# An edition whose figures still move: its page polls its progress every 2 s.
LIVE = (EditionStatus.PLANNING, EditionStatus.SENDING)
DONE = {"resumed": "The edition was resumed: its queued deliveries are on their way.",
        "requeued": "The deliveries that gave up after temporary failures are queued again.",
        "nothing": "There was nothing to requeue."}
Note = Annotated[str, Form(max_length=10_000)]


@router.get("/editions", response_class=HTMLResponse)
def editions_page(request: Request, session: SessionDep, user: CurrentEditor,
                  page: PageNumber = 1) -> HTMLResponse:
    pages = Pages(page, reports.count(session))
    return render(request, user, "editions.html", section="editions", pages=pages,
                  editions=reports.recent(session, pages.per_page, pages.offset))


@router.get("/editions/new", response_class=HTMLResponse)
def new_edition(request: Request, session: SessionDep, user: CurrentEditor,
                dry_run: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> HTMLResponse:
    """The form; with ``dry_run``, that dry run's figures (live until done) and the send."""
    trial = _dry_run(session, dry_run) if dry_run else None
    extra = _trial(session, trial) if trial else {}
    form = {"frequency": trial["frequency"], "tags": trial["tags"] or [],
            "note": trial["note"] or ""} if trial else {"frequency": "weekly", "tags": [],
                                                         "note": ""}
    return _form(request, session, user, form=form, **extra)


@router.post("/editions/new", response_class=HTMLResponse)
def dry_run_edition(request: Request, session: SessionDep, user: CurrentEditor,
                    frequency: Annotated[str, Form(max_length=16)] = "",
                    tags: Annotated[list[str] | None, Form(max_length=200)] = None,
                    note: Note = "") -> Response:
    """Step one: a dry run (nothing is sent); its page shows what the edition would do."""
    form = {"frequency": frequency, "tags": tags or [], "note": note}
    errors = {}
    if frequency not in editions.DIGEST_FREQUENCIES:
        errors["frequency"] = "Choose daily or weekly."
    try:
        editions.editors_note(note)
    except EditionError as exc:
        errors["note"] = _sentence(str(exc))
    if not errors:
        try:
            edition = editions.request(session, frequency, tags=tags, dry_run=True,
                                       source="console", note=note)
        except EditionError as exc:
            session.rollback()
            errors["tags"] = _sentence(str(exc))
    if errors:
        return _form(request, session, user, 422, form=form, errors=errors)
    audit.record(session, user.actor.name, "edition.send", f"edition:{edition.id}",
                 {"frequency": frequency, "tags": edition.tags, "dry_run": True,
                  "note": bool(edition.note)}, user.ip)
    session.commit()
    return RedirectResponse(f"/admin/editions/new?dry_run={edition.id}", 303)


@router.post("/editions/{edition_id}/send")
def send_edition(session: SessionDep, user: CurrentEditor, edition_id: RowId) -> Response:
    """Step two: send what the dry run planned (same frequency, topics and note). Twice is
    once: the dry run's id is the request's idempotency key."""
    trial = _dry_run(session, edition_id)
    if trial["status"] != EditionStatus.DONE:
        raise Conflict(f"dry run {edition_id} is {trial['status']}: wait for its figures")
    key = f"console:dry-run:{edition_id}"
    edition = editions.find(session, trial["frequency"], key)
    if edition is None:
        edition = editions.request(session, trial["frequency"], tags=trial["tags"],
                                   source="console", idempotency_key=key, note=trial["note"])
        audit.record(session, user.actor.name, "edition.send", f"edition:{edition.id}",
                     {"frequency": edition.frequency, "tags": edition.tags, "dry_run": False,
                      "note": bool(edition.note), "dry_run_id": edition_id}, user.ip)
        session.commit()
    return RedirectResponse(f"/admin/editions/{edition.id}", 303)


@router.get("/editions/{edition_id}", response_class=HTMLResponse)
def edition_page(request: Request, session: SessionDep, user: CurrentEditor,
                 edition_id: RowId, page: PageNumber = 1) -> HTMLResponse:
    """The report; its per-topic figures (``page``: their page) load after it."""
    report = reports.report(session, edition_id)
    timeline = audit.entries(session, audit.Filter(target=f"edition:{edition_id}"), 20)
    # When each time zone's readers get it (read once with the page, not polled: a GROUP BY
    # over the edition's deliveries).
    released = None if report["dry_run"] else waves.summary(session, edition_id)
    return render(request, user, "edition.html", section="editions", report=report,
                  live=report["status"] in LIVE, timeline=timeline, released=released,
                  done=DONE.get(request.query_params.get("done", "")), contents_page=page,
                  clicks=None if report["dry_run"] else click_figures.edition_clicks(session, edition_id),
                  unsubscribes=attribution.for_edition(session, edition_id))


@router.get("/editions/{edition_id}/dry-run", response_class=HTMLResponse)
def dry_run_progress(request: Request, session: SessionDep, user: CurrentEditor,
                     edition_id: RowId) -> HTMLResponse:
    """A dry run's figures alone (and the send button once it is done), polled by htmx."""
    trial = _dry_run(session, edition_id)
    return render(request, user, "_dry_run.html", **_trial(session, trial))


@router.get("/editions/{edition_id}/progress", response_class=HTMLResponse)
def edition_progress(request: Request, session: SessionDep, user: CurrentEditor,
                     edition_id: RowId) -> HTMLResponse:
    """The status and counts block alone, polled by htmx while the edition is live."""
    report = reports.report(session, edition_id)
    return render(request, user, "_edition_progress.html", report=report,
                  live=report["status"] in LIVE)


@router.get("/editions/{edition_id}/contents", response_class=HTMLResponse)
def edition_contents(request: Request, session: SessionDep, user: CurrentEditor,
                     edition_id: RowId, page: PageNumber = 1) -> HTMLResponse:
    """Per-topic figures and a sample of what it sent, loaded after the page (an edition of
    100,000 readers has tens of thousands of distinct digests to go through) and refreshed
    every 10 s while it sends."""
    report = reports.report(session, edition_id)
    rows = reports.topics(session, edition_id)
    pages = Pages(page, len(rows or ()))
    # htmx swaps the block into the edition's page; a plain link (no script) gets a page.
    template = "_edition_contents.html" if request.headers.get("hx-request") \
        else "edition_contents.html"
    return render(request, user, template, section="editions", report=report, pages=pages,
                  live=report["status"] in LIVE, sample=reports.sample(session, edition_id),
                  topics=rows and rows[pages.offset:pages.offset + pages.per_page])


@router.post("/editions/{edition_id}/resume")
def resume_edition(session: SessionDep, user: CurrentEditor, edition_id: RowId) -> Response:
    done = reconcile.resume(session, edition_id)
    _record_after(session, user, "edition.resume", edition_id, done)
    return RedirectResponse(f"/admin/editions/{edition_id}?done=resumed", 303)


@router.post("/editions/{edition_id}/requeue")
def requeue_edition(session: SessionDep, user: CurrentEditor, edition_id: RowId) -> Response:
    done = reconcile.requeue_dead(session, edition_id)
    _record_after(session, user, "edition.requeue", edition_id, done)
    outcome = "requeued" if done["requeued"] else "nothing"
    return RedirectResponse(f"/admin/editions/{edition_id}?done={outcome}", 303)


def _record_after(session: Session, user: ConsoleUser, action: str, edition_id: int,
                  details: dict[str, Any]) -> None:
    # resume and requeue commit their own work (and dispatch after it): the entry follows in
    # a transaction of its own once they have succeeded, as in the API.
    audit.record(session, user.actor.name, action, f"edition:{edition_id}", details, user.ip)
    session.commit()


def _dry_run(session: Session, edition_id: int) -> dict[str, Any]:
    report = reports.report(session, edition_id)
    if not report["dry_run"]:
        raise EditionNotFound(f"edition {edition_id} is not a dry run")
    return report


def _trial(session: Session, trial: dict[str, Any]) -> dict[str, Any]:
    """What the dry run's block shows: the run, whether it still counts, its topics."""
    topics = reports.topics(session, trial["id"]) or []
    return {"trial": trial, "live": trial["status"] in LIVE, "topics": topics,
            "pages": Pages(1, len(topics), per_page=max(len(topics), 1))}


def _form(request: Request, session: Session, user: ConsoleUser, status: int = 200,
          **context: Any) -> HTMLResponse:
    choices = session.execute(select(Tag.slug, Tag.name).order_by(Tag.name)).all()
    return render(request, user, "edition_new.html", status, section="new",
                  choices=choices, upcoming=schedule.upcoming(session),
                  note_max=editions.NOTE_MAX, **context)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")

