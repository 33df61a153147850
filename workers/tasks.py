"""Thin tasks: ids in, one domain call, commit. Payloads are JSON primitives only."""

from __future__ import annotations

from newsletter import db, delivery, editions, events, mailer, notices
from newsletter.config import get_settings
from newsletter.models import utcnow
from workers.celery_app import app


def _transport() -> mailer.SmtpTransport:
    return mailer.get_transport(get_settings().smtp)


@app.task(name="newsletter.send_confirmation", autoretry_for=(mailer.TemporaryFailure,),
          retry_backoff=30, max_retries=5)
def send_confirmation(reader_id: int) -> None:
    with db.session_scope() as session:
        notices.send_confirmation(session, reader_id, _transport())


@app.task(name="newsletter.plan_edition")
def plan_edition(edition_id: int) -> None:
    with db.session_scope() as session:
        delivery.plan(session, edition_id)


@app.task(name="newsletter.send_batch")
def send_batch(delivery_ids: list[int]) -> None:
    with db.session_scope() as session:
        delivery.send_batch(session, delivery_ids, _transport())


@app.task(name="newsletter.relay")
def relay() -> None:
    with db.session_scope() as session:
        events.dispatch_pending(session)
        delivery.requeue_due(session)


@app.task(name="newsletter.scheduled_edition")
def scheduled_edition(frequency: str) -> None:
    with db.session_scope() as session:
        editions.request(session, frequency, source="schedule",
                         period=editions.period_key(frequency, utcnow()))
