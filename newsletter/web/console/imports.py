"""/admin/readers/import (admins): a CSV of readers moving in from another tool, run by a
worker (readers.import_jobs) while the page shows its progress (htmx polls a fragment)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.datastructures import UploadFile

from newsletter import audit
from newsletter.errors import ImportRowError
from newsletter.models import ReaderImport
from newsletter.readers import import_jobs
from newsletter.states import ImportStatus
from newsletter.web.console.auth import CurrentAdmin, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router(admin_only=True)
RUNNING = (ImportStatus.QUEUED, ImportStatus.RUNNING)


def _form(request: Request, session, user, status: int = 200, page: int = 1,
          **context) -> HTMLResponse:
    pages = Pages(page, session.scalar(select(func.count(ReaderImport.id))) or 0)
    recent = session.scalars(select(ReaderImport).order_by(ReaderImport.id.desc())
                             .limit(pages.per_page).offset(pages.offset)).all()
    return render(request, user, "imports.html", status, section="readers", pages=pages,
                  imports=recent, errors=context.pop("errors", {}), **context)


@router.get("/readers/import", response_class=HTMLResponse)
def import_form(request: Request, session: SessionDep, user: CurrentAdmin,
                page: PageNumber = 1) -> HTMLResponse:
    return _form(request, session, user, page=page)


@router.post("/readers/import", response_class=HTMLResponse)
async def start_import(request: Request, session: SessionDep, user: CurrentAdmin) -> Response:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _form(request, session, user, 422,
                     errors={"file": "Choose a CSV file to import."})
    try:
        text = import_jobs.decode(await upload.read())
        job = import_jobs.start(session, user.actor.name, upload.filename, text)
    except ImportRowError as exc:
        session.rollback()
        return _form(request, session, user, 422, filename=upload.filename,
                     errors={"file": f"{upload.filename}: {str(exc)[:1].upper()}{str(exc)[1:]}."})
    audit.record(session, user.actor.name, "readers.import", f"import:{job.id}",
                 {"file": job.filename, "rows": job.total_rows}, user.ip)
    session.commit()
    return RedirectResponse(f"/admin/readers/import/{job.id}", 303)


@router.get("/readers/import/{import_id}", response_class=HTMLResponse)
def import_page(request: Request, session: SessionDep, user: CurrentAdmin,
                import_id: RowId) -> HTMLResponse:
    return render(request, user, "import.html", section="readers",
                  job=import_jobs.get(session, import_id), running=RUNNING)


@router.get("/readers/import/{import_id}/progress", response_class=HTMLResponse)
def import_progress(request: Request, session: SessionDep, user: CurrentAdmin,
                    import_id: RowId) -> HTMLResponse:
    """The progress fragment htmx swaps in; it stops asking once the import is over."""
    return render(request, user, "_import_progress.html",
                  job=import_jobs.get(session, import_id), running=RUNNING)
