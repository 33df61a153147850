"""/admin/readers (admins): find a reader by the start of their address; their status,
topics, consent ledger and deliveries; export and erase (erasure confirmed first).

Readers are named by id in the audit log and in every URL here: an address never goes into
a log line or a Referer.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import audit
from newsletter.config import get_settings
from newsletter.readers import directory, privacy
from newsletter.web.console.auth import CurrentAdmin, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router(admin_only=True)
Text = Annotated[str, Query(max_length=320)]


@router.get("/readers", response_class=HTMLResponse)
def readers_page(request: Request, session: SessionDep, user: CurrentAdmin,
                 address: Text = "", status: Text = "", page: PageNumber = 1) -> HTMLResponse:
    where = directory.ReaderFilter(address=address, status=status)
    pages = Pages(page, directory.count_readers(session, where),
                  params=(("address", address), ("status", status)))
    return render(request, user, "readers.html", section="readers", pages=pages,
                  readers=directory.readers(session, where, pages.per_page, pages.offset),
                  statuses=directory.STATUSES, form={"address": address, "status": status},
                  done=request.query_params.get("done") == "erased")


@router.get("/readers/{reader_id}", response_class=HTMLResponse)
def reader_page(request: Request, session: SessionDep, user: CurrentAdmin, reader_id: RowId,
                page: PageNumber = 1) -> HTMLResponse:
    reader = directory.reader(session, reader_id)
    pages = Pages(page, directory.count_ledger(session, reader_id))
    return render(request, user, "reader.html", section="readers", reader=reader,
                  pages=pages, deliveries=directory.count_deliveries(session, reader_id),
                  ledger=directory.ledger(session, reader_id, pages.per_page, pages.offset),
                  timezone=get_settings().timezone)


@router.get("/readers/{reader_id}/deliveries", response_class=HTMLResponse)
def deliveries_page(request: Request, session: SessionDep, user: CurrentAdmin,
                    reader_id: RowId, page: PageNumber = 1) -> HTMLResponse:
    reader = directory.reader(session, reader_id)
    pages = Pages(page, directory.count_deliveries(session, reader_id))
    return render(request, user, "reader_deliveries.html", section="readers", reader=reader,
                  pages=pages, timezone=get_settings().timezone,
                  rows=directory.deliveries(session, reader_id, pages.per_page, pages.offset))


@router.post("/readers/{reader_id}/export")
def export(session: SessionDep, user: CurrentAdmin, reader_id: RowId) -> Response:
    """Everything held about the reader, as a JSON download (privacy.export)."""
    reader = directory.reader(session, reader_id)
    data = privacy.export(session, reader.email)
    audit.record(session, user.actor.name, "reader.export", f"reader:{reader.id}", {}, user.ip)
    session.commit()
    return Response(json.dumps(data, indent=2, ensure_ascii=False), media_type="application/json",
                    headers={"Content-Disposition":
                             f'attachment; filename="reader-{reader.id}.json"',
                             "Cache-Control": "no-store"})


@router.get("/readers/{reader_id}/erase", response_class=HTMLResponse)
def confirm_erase(request: Request, session: SessionDep, user: CurrentAdmin,
                  reader_id: RowId) -> HTMLResponse:
    reader = directory.reader(session, reader_id)
    return render(request, user, "reader_erase.html", section="readers", reader=reader,
                  deliveries=directory.count_deliveries(session, reader_id))


@router.post("/readers/{reader_id}/erase")
def erase(session: SessionDep, user: CurrentAdmin, reader_id: RowId) -> Response:
    reader = directory.reader(session, reader_id)
    erased_id = privacy.erase(session, reader.email)
    # By id only: the log outlives the erasure and must not need erasing itself.
    audit.record(session, user.actor.name, "reader.erase", f"reader:{erased_id}",
                 {"via": "console"}, user.ip)
    session.commit()
    return RedirectResponse("/admin/readers?done=erased", 303)
