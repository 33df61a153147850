"""/admin/deliverability: bounces and complaints, DKIM, the last edition's SMTP outcomes
(editors and admins); the suppression list, searched by address and corrected with a
reason (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import audit
from newsletter.editions import reports
from newsletter.mail import dkim
from newsletter.readers import bounce_log, suppressions
from newsletter.readers.subscriptions import SubscriptionError, normalise_email
from newsletter.web.console.auth import (
    CurrentAdmin,
    CurrentEditor,
    console_router,
    render,
)
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router()
admin_router = console_router(admin_only=True)
Text = Annotated[str, Query(max_length=320)]
REASON_MAX = 300


@router.get("/deliverability", response_class=HTMLResponse)
def deliverability_page(request: Request, session: SessionDep, user: CurrentEditor,
                        kind: Text = "", page: PageNumber = 1) -> HTMLResponse:
    pages = Pages(page, bounce_log.count(session, kind), params=(("kind", kind),))
    return render(request, user, "deliverability.html", section="deliverability",
                  pages=pages, kind=kind, kinds=bounce_log.KINDS,
                  events=bounce_log.events(session, pages.per_page, pages.offset, kind),
                  recent=bounce_log.recent_counts(session), dkim=dkim.status(),
                  last=reports.last_sent(session))


@admin_router.get("/deliverability/suppressions", response_class=HTMLResponse)
def suppressions_page(request: Request, session: SessionDep, user: CurrentAdmin,
                      address: Text = "", reason: Text = "",
                      page: PageNumber = 1) -> HTMLResponse:
    errors, found, searched = {}, None, bool(address.strip())
    if searched:
        try:
            found = suppressions.find(session, normalise_email(address))
        except SubscriptionError:
            errors["address"] = f"“{address}” is not an email address."
        session.commit()  # a legacy entry found was rewritten keyed
    reason = reason if reason in suppressions.REASONS else ""
    pages = Pages(page, suppressions.count(session, reason), params=(("reason", reason),))
    return render(request, user, "suppressions.html", 422 if errors else 200,
                  section="deliverability", pages=pages, errors=errors, found=found,
                  searched=searched and not errors, reasons=suppressions.REASONS,
                  entries=suppressions.entries(session, pages.per_page, pages.offset, reason),
                  form={"address": address, "reason": reason},
                  done=request.query_params.get("done") == "removed")


@admin_router.get("/deliverability/suppressions/{entry_id}/remove",
                  response_class=HTMLResponse)
def confirm_remove(request: Request, session: SessionDep, user: CurrentAdmin,
                   entry_id: RowId) -> HTMLResponse:
    return render(request, user, "suppression_remove.html", section="deliverability",
                  entry=suppressions.get(session, entry_id), errors={}, form={})


@admin_router.post("/deliverability/suppressions/{entry_id}/remove",
                   response_class=HTMLResponse)
def remove(request: Request, session: SessionDep, user: CurrentAdmin, entry_id: RowId,
           why: Annotated[str, Form(max_length=2000)] = "") -> Response:
    why = " ".join(why.split())
    if not why or len(why) > REASON_MAX:
        entry = suppressions.get(session, entry_id)
        problem = ("Say why this address may be mailed again (it goes in the audit log)."
                   if not why else f"Keep the reason under {REASON_MAX} characters.")
        return render(request, user, "suppression_remove.html", 422, section="deliverability",
                      entry=entry, errors={"why": problem}, form={"why": why})
    entry = suppressions.lift(session, entry_id)
    audit.record(session, user.actor.name, "suppression.remove", f"suppression:{entry.id}",
                 {"reason": why, "was": entry.reason}, user.ip)
    session.commit()
    return RedirectResponse("/admin/deliverability/suppressions?done=removed", 303)
