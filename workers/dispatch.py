"""Turns outbox events into tasks; found by newsletter.events through an entry point."""

from __future__ import annotations

from typing import Any

from workers.celery_app import get_app

# event name → (task name, payload → args). Events without a consumer yet are simply
# marked dispatched.
ROUTES: dict[str, tuple[str, Any]] = {
    "reader.subscribed": ("newsletter.send_confirmation", lambda p: [p["reader_id"]]),
    "edition.requested": ("newsletter.plan_edition", lambda p: [p["edition_id"]]),
    "deliveries.queued": ("newsletter.send_batch", lambda p: [p["delivery_ids"]]),
}


def dispatch(event_id: int, name: str, payload: dict[str, Any]) -> bool:
    """Publish the task for one event; True once the broker has it."""
    route = ROUTES.get(name)
    if route is not None:
        task, args = route
        get_app().send_task(task, args=args(payload), retry=False)
    return True
