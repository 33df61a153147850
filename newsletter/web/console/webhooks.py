"""/admin/webhooks (admins): the endpoints told of events, what was sent to them, the dead
letters and their retry. A new endpoint's secret is shown once, on the page that made it;
removal is confirmed on a page of its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import audit, events
from newsletter.errors import WebhookError
from newsletter.web.console.auth import CurrentAdmin, console_router, render
from newsletter.web.deps import RowId, SessionDep
from newsletter.webhooks import delivery, endpoints

router = console_router(admin_only=True)
DONE = {"removed": "The endpoint was removed; nothing more is sent to it.",
        "retried": "The delivery is queued again; it goes out within seconds."}


def _listing(request: Request, session, user, status: int = 200, **context) -> HTMLResponse:
    listed = endpoints.listing(session)
    return render(request, user, "webhooks.html", status, section="webhooks",
                  endpoints=listed, urls={e.id: e.url for e in listed},
                  figures=delivery.figures(session),
                  dead=delivery.recent(session, delivery.DEAD),
                  attempts=delivery.recent(session), event_names=events.WEBHOOK_EVENTS,
                  done=DONE.get(request.query_params.get("done", "")), **context)


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, session: SessionDep, user: CurrentAdmin) -> HTMLResponse:
    return _listing(request, session, user, form={"events": list(events.WEBHOOK_EVENTS)})


@router.post("/webhooks", response_class=HTMLResponse)
def add_webhook(request: Request, session: SessionDep, user: CurrentAdmin,
                url: Annotated[str, Form(max_length=endpoints.MAX_URL)] = "",
                event: Annotated[list[str], Form(max_length=20)] = ()) -> HTMLResponse:
    try:
        endpoints.check_events(event)
    except WebhookError as exc:
        return _refused(request, session, user, url, event, "events", exc)
    try:
        endpoint, secret = endpoints.register(session, url, event, user.actor.name)
    except WebhookError as exc:
        session.rollback()
        return _refused(request, session, user, url, event, "url", exc)
    audit.record(session, user.actor.name, "webhook.create", f"webhook:{endpoint.id}",
                 {"url": endpoint.url, "events": endpoint.events}, user.ip)
    session.commit()
    return _listing(request, session, user, 201, form={"events": list(events.WEBHOOK_EVENTS)},
                    created=endpoint, secret=secret)


def _refused(request: Request, session, user, url: str, event, field: str,
             exc: WebhookError) -> HTMLResponse:
    """The form again, as typed, with what is wrong beside the field at fault."""
    return _listing(request, session, user, 422, form={"url": url, "events": list(event)},
                    errors={field: str(exc)[:1].upper() + str(exc)[1:] + "."})


@router.get("/webhooks/{endpoint_id}/remove", response_class=HTMLResponse)
def confirm_remove(request: Request, session: SessionDep, user: CurrentAdmin,
                   endpoint_id: RowId) -> HTMLResponse:
    return render(request, user, "webhook_remove.html", section="webhooks",
                  endpoint=endpoints.get(session, endpoint_id),
                  figures=delivery.figures(session).get(endpoint_id, {}))


@router.post("/webhooks/{endpoint_id}/remove")
def remove_webhook(session: SessionDep, user: CurrentAdmin, endpoint_id: RowId) -> Response:
    endpoint = endpoints.remove(session, endpoint_id)
    audit.record(session, user.actor.name, "webhook.delete", f"webhook:{endpoint_id}",
                 {"url": endpoint.url}, user.ip)
    session.commit()
    return RedirectResponse("/admin/webhooks?done=removed", 303)


@router.post("/webhooks/deliveries/{delivery_id}/retry")
def retry_delivery(session: SessionDep, user: CurrentAdmin, delivery_id: RowId) -> Response:
    row = delivery.retry(session, delivery_id)
    audit.record(session, user.actor.name, "webhook.retry", f"webhook:{row.endpoint_id}",
                 {"delivery": row.id, "event": row.event_name}, user.ip)
    session.commit()
    return RedirectResponse("/admin/webhooks?done=retried", 303)
