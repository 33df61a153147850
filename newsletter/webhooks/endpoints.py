"""Webhook endpoints: registered by an admin (console or API), listed, removed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter import events
from newsletter.config import get_settings
from newsletter.errors import FeedError, WebhookError, WebhookNotFound
from newsletter.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from newsletter.newsroom import fetch
from newsletter.webhooks import secrets

MAX_URL = 2048


def guard() -> fetch.Guard:
    """The feeds' SSRF guard with the webhooks' own switches and timeout."""
    s = get_settings()
    return fetch.Guard(allow_private=s.webhook_allow_private,
                       allowed_hosts=frozenset(h.strip().lower() for h in s.webhook_allowed_hosts),
                       timeout_s=s.webhook_timeout_s, max_redirects=0,
                       switches="NEWSLETTER_WEBHOOK")


def check_url(url: str) -> str:
    """``url`` stripped, if the guard lets us reach it; WebhookError says why not."""
    url = (url or "").strip()
    if not url or len(url) > MAX_URL:
        raise WebhookError(f"a webhook URL is 1 to {MAX_URL} characters")
    try:
        fetch.check(url, guard())
    except FeedError as exc:  # Refused, or a host that does not resolve
        raise WebhookError(str(exc)) from None
    except ValueError as exc:  # a host the resolver cannot even be asked about (a NUL in it)
        raise WebhookError(f"refused {url!r}: not a valid URL ({exc})") from None
    return url


def check_events(names: Iterable[str]) -> list[str]:
    """The events asked for, in the house's order; WebhookError names any unknown one."""
    wanted = set(names)
    unknown = sorted(wanted - set(events.WEBHOOK_EVENTS))
    if unknown:
        raise WebhookError(f"unknown event {', '.join(unknown)}; known: "
                           f"{', '.join(events.WEBHOOK_EVENTS)}")
    if not wanted:
        raise WebhookError("name at least one event")
    return [name for name in events.WEBHOOK_EVENTS if name in wanted]


def register(session: Session, url: str, names: Iterable[str],
             actor: str) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (the only time the secret is given out).

    It is told of events recorded from now on, not of the outbox's history.
    """
    wanted = check_events(names)  # first: it needs no DNS
    url = check_url(url)
    secret = secrets.new_secret()
    last = session.scalar(select(func.max(OutboxEvent.id))) or 0
    endpoint = WebhookEndpoint(url=url, events=wanted, secret=secrets.seal(secret),
                               after_event_id=last, created_by=actor[:320])
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise WebhookNotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def listing(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def remove(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """Delete an endpoint and what it still had to be sent (nothing more goes to it)."""
    endpoint = get(session, endpoint_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
    session.delete(endpoint)
    session.flush()
    return endpoint


def to_dict(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What the API shows of an endpoint: never its secret."""
    return {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
            "created_at": endpoint.created_at.isoformat(), "created_by": endpoint.created_by}
