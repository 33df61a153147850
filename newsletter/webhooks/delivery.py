"""Sending webhook deliveries: signed, at least once, in order per reader, with backoff.

Only the head of a queue is sent: the oldest pending delivery of its endpoint and order key
(reader, edition or article). Until it is delivered or dead-lettered the ones behind it
wait, so a reader's events never overtake each other at one endpoint. A head is claimed
(``claimed_until``) before its POST, so two workers never send the same one; a worker that
dies leaves a claim that runs out and the head is tried again (at least once).

A failure (no connection, a timeout, any answer but 2xx, a target the guard now refuses)
counts an attempt and waits base × 2^(attempts-1) (at most WEBHOOK_RETRY_MAX_S), half of
it jittered; after WEBHOOK_MAX_ATTEMPTS attempts or WEBHOOK_MAX_AGE_HOURS the delivery is
dead: shown in the console, retried from there by hand, and no longer holding back the
ones behind it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from newsletter.config import get_settings
from newsletter.errors import FeedError, WebhookNotFound
from newsletter.models import WebhookDelivery, WebhookEndpoint, utcnow
from newsletter.newsroom import fetch
from newsletter.webhooks import endpoints, secrets, signing

log = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# Heads claimed per round; a round's deliveries go one after another.
ROUND = 50
# One task sends for at most this long, then leaves the rest to the next: a worker slot is
# never held for long, whatever the receivers do.
BUDGET_S = 20.0
# Delivered rows are kept this long (the console's "last attempts", a receiver's questions
# about last week), then deleted; dead letters stay until retried or their endpoint goes.
KEEP_DELIVERED = timedelta(days=7)


@dataclass
class Run:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    # Endpoints that failed in this run: their other heads wait for the next run rather
    # than cost a timeout each.
    down: set[int] = field(default_factory=set)


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: exponential, half of it jittered."""
    s = get_settings()
    ceiling = min(s.webhook_retry_max_s, s.webhook_retry_base_s * 2 ** max(0, attempts - 1))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


def _heads(session: Session, limit: int):
    """The due heads of their queues, unclaimed, oldest first."""
    now = utcnow()
    older = aliased(WebhookDelivery)
    ahead = select(older.id).where(
        older.endpoint_id == WebhookDelivery.endpoint_id,
        older.order_key == WebhookDelivery.order_key,
        older.status == PENDING, older.event_id < WebhookDelivery.event_id).exists()
    return (select(WebhookDelivery.id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now,
                   or_(WebhookDelivery.claimed_until.is_(None),
                       WebhookDelivery.claimed_until < now), ~ahead)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_id).limit(limit))


def _claim(session: Session, limit: int) -> list[int]:
    now = utcnow()
    # Long enough for one POST and its DNS check; a dead worker's claim runs out after it.
    until = now + timedelta(seconds=get_settings().webhook_timeout_s * 3 + 10)
    ids = list(session.scalars(_heads(session, limit)))
    if not ids:
        return []
    claimed = session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == PENDING,
               or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now))
        .values(claimed_until=until).returning(WebhookDelivery.id)).all()
    session.commit()
    return sorted(claimed, key=ids.index)


def send_due(session: Session, budget_s: float = BUDGET_S) -> Run:
    """Send what is due, head by head, until nothing is or the budget is spent."""
    run, deadline = Run(), time.monotonic() + budget_s
    while time.monotonic() < deadline:
        claimed = _claim(session, ROUND)
        if not claimed:
            break
        sent_any = False
        for index, delivery_id in enumerate(claimed):
            if time.monotonic() >= deadline:
                _release(session, claimed[index:])
                return run
            sent_any |= _attempt(session, delivery_id, run)
        if not sent_any:
            break  # every head failed or waits: the next run (beat) comes back for them
    return run


def _release(session: Session, ids: list[int]) -> None:
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                    .values(claimed_until=None))
    session.commit()


def _attempt(session: Session, delivery_id: int, run: Run) -> bool:
    """POST one claimed delivery and record how it went; True if it arrived."""
    delivery = session.get(WebhookDelivery, delivery_id)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
    if delivery is None or endpoint is None:  # the endpoint was deleted meanwhile
        return False
    if endpoint.id in run.down:
        _release(session, [delivery_id])
        return False
    url, sealed, message_id, body = endpoint.url, endpoint.secret, delivery.event_id, body_of(delivery)
    session.rollback()  # no transaction stays open while a receiver takes its time
    error = post(url, sealed, message_id, body)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:  # its endpoint was removed meanwhile
        return False
    now = utcnow()
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.claimed_until = now, None
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error = DELIVERED, now, None
        run.delivered += 1
    else:
        run.down.add(delivery.endpoint_id)
        _failed(delivery, error, run)
    session.commit()
    return error is None


def _failed(delivery: WebhookDelivery, error: str, run: Run) -> None:
    s = get_settings()
    delivery.last_error = error[:500]
    too_old = utcnow() - delivery.since >= timedelta(hours=s.webhook_max_age_hours)
    if delivery.attempts >= s.webhook_max_attempts or too_old:
        delivery.status = DEAD
        run.dead += 1
        why = "attempts" if delivery.attempts >= s.webhook_max_attempts else "age"
        log.warning("webhook dead-lettered", extra={"delivery_id": delivery.id,
                                                    "endpoint_id": delivery.endpoint_id,
                                                    "limit": why, "reason": error})
    else:
        delivery.next_attempt_at = utcnow() + backoff(delivery.attempts)
        run.failed += 1


def body_of(delivery: WebhookDelivery) -> bytes:
    """The JSON sent: the Standard Webhooks envelope (type, timestamp, data)."""
    return json.dumps({"type": delivery.event_name,
                       "timestamp": delivery.occurred_at.isoformat().replace("+00:00", "Z"),
                       "data": delivery.payload}, separators=(",", ":")).encode()


def post(url: str, sealed_secret: str, event_id: int, body: bytes) -> str | None:
    """POST a delivery's body to its endpoint, signed; None if it arrived (2xx), else why
    not."""
    guard = endpoints.guard()
    try:
        secret = secrets.unseal(sealed_secret)
        # Checked again at each attempt: a name that resolved outside may resolve inside now.
        address = fetch.check(url, guard)
    except (FeedError, ValueError) as exc:
        return str(exc)
    parts = urlsplit(url)
    headers = {**signing.headers(secret, f"msg_{event_id}", int(time.time()), body),
               "Host": parts.netloc.rsplit("@", 1)[-1]}
    # To the address that was checked, so a second DNS answer cannot swap in another.
    pinned = httpx.URL(url).copy_with(host=address)
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    try:
        with httpx.Client(trust_env=False, follow_redirects=False) as client, client.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions,
                timeout=guard.timeout_s) as response:
            # The answer's body is never read: a receiver cannot make us download anything.
            if 200 <= response.status_code < 300:
                return None
            return f"HTTP {response.status_code}"
    except httpx.TimeoutException:
        return f"timed out after {guard.timeout_s:g} s"
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}: {exc}"[:500]


def retry(session: Session, delivery_id: int) -> WebhookDelivery:
    """Put a dead-lettered delivery back in its queue, with a fresh run of attempts."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise WebhookNotFound(f"no webhook delivery {delivery_id}")
    if delivery.status == DEAD:
        now = utcnow()
        delivery.status, delivery.attempts, delivery.since = PENDING, 0, now
        delivery.next_attempt_at, delivery.claimed_until = now, None
    return delivery


def prune(session: Session) -> int:
    """Delete deliveries that arrived more than KEEP_DELIVERED ago; how many. The caller
    commits."""
    return session.execute(delete(WebhookDelivery).where(
        WebhookDelivery.status == DELIVERED,
        WebhookDelivery.delivered_at < utcnow() - KEEP_DELIVERED)).rowcount


def figures(session: Session) -> dict[int, dict[str, int]]:
    """Per endpoint: how many deliveries are pending, delivered and dead."""
    out: dict[int, dict[str, int]] = {}
    for endpoint_id, status, n in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)):
        out.setdefault(endpoint_id, {PENDING: 0, DELIVERED: 0, DEAD: 0})[status] = n
    return out


def recent(session: Session, status: str | None = None, limit: int = 20) -> list[WebhookDelivery]:
    """The latest attempted deliveries (or those of one status), newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.last_attempt_at.is_not(None))
    if status:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query.order_by(WebhookDelivery.last_attempt_at.desc(),
                                               WebhookDelivery.id.desc()).limit(limit)))

