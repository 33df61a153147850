"""Admin API: outgoing webhooks (admins only). The signing secret is in the answer to the
POST that made the endpoint and nowhere else, ever; create and delete are in the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from newsletter import audit
from newsletter.web.deps import Admin, AdminActor, RowId, SessionDep
from newsletter.webhooks import endpoints

router = APIRouter(prefix="/api", dependencies=[Admin])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=endpoints.MAX_URL)
    events: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=20)


@router.post("/webhooks", status_code=201)
def create_webhook(item: WebhookIn, session: SessionDep, actor: AdminActor) -> dict[str, Any]:
    """Register an endpoint; the answer carries its signing ``secret``, shown only here."""
    endpoint, secret = endpoints.register(session, item.url, item.events, actor.name)
    audit.record(session, actor.name, "webhook.create", f"webhook:{endpoint.id}",
                 {"url": endpoint.url, "events": endpoint.events}, actor.ip)
    session.commit()
    return {**endpoints.to_dict(endpoint), "secret": secret}


@router.get("/webhooks")
def list_webhooks(session: SessionDep) -> list[dict[str, Any]]:
    return [endpoints.to_dict(e) for e in endpoints.listing(session)]


@router.delete("/webhooks/{endpoint_id}", status_code=204)
def delete_webhook(endpoint_id: RowId, session: SessionDep, actor: AdminActor) -> Response:
    """Remove an endpoint and whatever it was still to be sent."""
    endpoint = endpoints.remove(session, endpoint_id)
    audit.record(session, actor.name, "webhook.delete", f"webhook:{endpoint_id}",
                 {"url": endpoint.url}, actor.ip)
    session.commit()
    return Response(status_code=204)
