"""From the outbox to the endpoints: one delivery row per endpoint and event it wants.

events.record writes a webhook event's id to webhook_pending in the event's own
transaction; this takes those ids in order, writes the deliveries and deletes the ids in
one transaction. Run twice at once, both write the same rows (the second insert is ignored)
and ordering holds: a reader's later event commits after their earlier one, so whoever
sees the later one sees the earlier one too and writes both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter import sql
from newsletter.models import OutboxEvent, WebhookDelivery, WebhookEndpoint, WebhookPending

# Events fanned out per transaction: a burst of confirmations is a few short transactions.
BATCH = 500


def order_key(payload: dict[str, Any]) -> str:
    """What a delivery must not overtake: the same reader's, edition's or article's events."""
    for kind in ("reader", "edition", "article"):
        if payload.get(f"{kind}_id") is not None:
            return f"{kind}:{payload[f'{kind}_id']}"
    return "site"


def fan_out(session: Session, batch: int = BATCH) -> int:
    """Write the deliveries of the events waiting (up to ``batch``); how many events it
    took (``batch``: there may be more). The caller commits."""
    waiting = session.execute(
        select(OutboxEvent.id, OutboxEvent.name, OutboxEvent.payload, OutboxEvent.created_at)
        .join(WebhookPending, WebhookPending.event_id == OutboxEvent.id)
        .order_by(OutboxEvent.id).limit(batch)).all()
    if not waiting:
        return 0
    endpoints = session.execute(select(WebhookEndpoint.id, WebhookEndpoint.events,
                                       WebhookEndpoint.after_event_id)).all()
    rows = [{"endpoint_id": endpoint_id, "event_id": event_id, "event_name": name,
             "order_key": order_key(payload), "payload": payload, "occurred_at": at,
             "since": at, "status": "pending", "attempts": 0, "next_attempt_at": at}
            for event_id, name, payload, at in waiting
            for endpoint_id, wanted, after in endpoints
            if name in wanted and event_id > after]
    if rows:
        session.execute(sql.insert_ignoring_duplicates(session, WebhookDelivery.__table__), rows)
    session.execute(delete(WebhookPending).where(
        WebhookPending.event_id.in_([row.id for row in waiting])))
    return len(waiting)
