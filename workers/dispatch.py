"""Turns outbox events into tasks; found by newsletter.events through an entry point."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from newsletter.events import WEBHOOK_EVENTS
from workers.celery_app import get_app

# event name → (task name, payload → args). Events without a consumer yet are simply
# marked dispatched.
ROUTES: dict[str, tuple[str, Any]] = {
    # The list task even for one reader: it is the one that keeps to the confirmation ceiling.
    "reader.subscribed": ("newsletter.send_confirmations", lambda p: [[p["reader_id"]]]),
    "reader.confirmed": ("newsletter.send_welcome", lambda p: [p["reader_id"]]),
    "reader.data_link_requested": ("newsletter.send_data_link", lambda p: [p["reader_id"]]),
    "edition.requested": ("newsletter.plan_edition", lambda p: [p["edition_id"]]),
    "deliveries.queued": ("newsletter.send_batch", lambda p: [p["delivery_ids"]]),
    "article.published": ("newsletter.alert_article", lambda p: [p["article_id"]]),
    "alert.window_opened": ("newsletter.close_alert_window", lambda p: [p["edition_id"]]),
    "readers.import_requested": ("newsletter.import_readers", lambda p: [p["import_id"]]),
    "preview.test_send": ("newsletter.send_test", lambda p: [
        p["to"], p.get("email") or "", ",".join(p.get("tags") or []), p.get("frequency") or ""]),
}
# event name → payload → extra send options. An absolute ETA, not a countdown: an event the
# relay re-sends late must not wait a whole window again. (A window is minutes, well inside
# Redis's visibility timeout, so holding the ETA task in the worker is safe.)
OPTIONS: dict[str, Any] = {
    "alert.window_opened": lambda p: {"eta": datetime.fromisoformat(p["due_at"])},
}


# event name → (task that takes a list, payload → its item): inside batch(), the events of
# one name go as one task. A burst of sign-ups is then a task per outbox batch (20 ms of
# them), not one per reader: publishing a task was a fifth of the web process's CPU per
# subscribe (py-spy, subscribe benchmark).
COALESCED: dict[str, tuple[str, Any]] = {
    "reader.subscribed": ("newsletter.send_confirmations", lambda p: p["reader_id"]),
}

# The producer of the batch being published in this thread, if any (see batch()), and the
# items of its coalesced events so far.
_producer: ContextVar[Any] = ContextVar("newsletter_dispatch_producer", default=None)
_coalesced: ContextVar[dict[str, list[Any]] | None] = ContextVar(
    "newsletter_dispatch_coalesced", default=None)


# The doorbell of outgoing webhooks: one task fans out every waiting event and sends, so a
# batch of events rings it once.
WEBHOOKS_TASK = "newsletter.deliver_webhooks"


def dispatch(event_id: int, name: str, payload: dict[str, Any]) -> bool:
    """Publish the task for one event; True once the broker has it (inside ``batch()``:
    once the batch has left without error)."""
    groups = _coalesced.get()
    if name in WEBHOOK_EVENTS:
        if groups is not None:
            groups.setdefault(WEBHOOKS_TASK, [])
        else:
            get_app().send_task(WEBHOOKS_TASK, retry=False, producer=_producer.get(),
                                argsrepr="()", kwargsrepr="{}")
    if groups is not None and name in COALESCED:
        groups.setdefault(name, []).append(COALESCED[name][1](payload))
        return True  # published with the batch, as one task (see batch())
    route = ROUTES.get(name)
    if route is not None:
        task, args = route
        options = OPTIONS[name](payload) if name in OPTIONS else {}
        task_args = args(payload)
        # The reprs given: Celery's own (saferepr, in Python) cost a tenth of a publish, and
        # our arguments are ids and short strings, which repr() shows whole.
        get_app().send_task(task, args=task_args, retry=False, producer=_producer.get(),
                            argsrepr=repr(task_args), kwargsrepr="{}", **options)
    return True


@contextmanager
def batch() -> Iterator[None]:
    """Publish the dispatches made inside as one batch (on Redis, one pipelined write);
    the events named in COALESCED go as one task per name.

    A task published alone costs ~680 us of CPU here, mostly kombu taking a producer and
    making a Redis client for it; in a batch, ~240 us (the web process publishes one per
    subscribe). Raises on leaving if the batch did not reach the broker.
    """
    with get_app().producer_or_acquire() as producer, producer.batch():
        token, groups = _producer.set(producer), {}
        grouped = _coalesced.set(groups)
        try:
            yield
            if groups.pop(WEBHOOKS_TASK, None) is not None:
                get_app().send_task(WEBHOOKS_TASK, retry=False, producer=producer,
                                    argsrepr="()", kwargsrepr="{}")
            for name, items in groups.items():
                get_app().send_task(COALESCED[name][0], args=[items], retry=False,
                                    producer=producer, argsrepr=repr([items]),
                                    kwargsrepr="{}")
        finally:
            _coalesced.reset(grouped)
            _producer.reset(token)


dispatch.batch = batch  # type: ignore[attr-defined]  # found by newsletter.events
