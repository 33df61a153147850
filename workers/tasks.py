"""Thin tasks: ids in, one domain call, commit. Payloads are JSON primitives only."""

from __future__ import annotations

import random

from newsletter import db
from newsletter.config import get_settings
from newsletter.editions import alerts, planning, preview, reconcile, retention, schedule
from newsletter.mail import mailer
from newsletter.newsroom import feeds
from newsletter.readers import import_jobs, notices
from newsletter.sending import batch
from newsletter.webhooks import delivery as webhook_delivery
from newsletter.webhooks import fanout
from workers.celery_app import app


def _transport() -> mailer.SmtpTransport:
    return mailer.get_transport(get_settings().smtp)


@app.task(name="newsletter.send_confirmation")
def send_confirmation(reader_id: int) -> None:
    # Kept for tasks published before events went to send_confirmations, which keeps to
    # the confirmation ceiling; they join it.
    send_confirmations.delay([reader_id])


@app.task(name="newsletter.send_confirmations", bind=True, max_retries=5)
def send_confirmations(self, reader_ids: list[int]) -> None:
    run = notices.send_confirmations(reader_ids, _transport())
    if run.deferred:
        # Over the confirmation ceiling: a task of their own when there is room again,
        # with fresh retries (waiting for room is not failing), spread over a few seconds.
        send_confirmations.apply_async(args=[run.deferred],
                                       countdown=run.wait_s + random.uniform(0, 5))
    if run.later:
        # The readers whose email failed for now, with send_confirmation's backoff: full
        # jitter up to 30 s × 2^retries by default (half the operator's retry base), ≤ 10 min.
        ceiling = min(600.0, get_settings().retry_base_s / 2 * 2 ** self.request.retries)
        raise self.retry(args=[run.later], countdown=random.uniform(0, ceiling))


@app.task(name="newsletter.send_welcome", autoretry_for=(mailer.TemporaryFailure,),
          retry_backoff=30, max_retries=5)
def send_welcome(reader_id: int) -> None:
    with db.session_scope() as session:
        notices.send_welcome(session, reader_id, _transport())


@app.task(name="newsletter.send_data_link", autoretry_for=(mailer.TemporaryFailure,),
          retry_backoff=30, max_retries=5)
def send_data_link(reader_id: int) -> None:
    with db.session_scope() as session:
        notices.send_data_link(session, reader_id, _transport())


@app.task(name="newsletter.import_readers", bind=True, max_retries=3)
def import_readers(self, import_id: int) -> None:
    with db.session_scope() as session:
        held = not import_jobs.run(session, import_id) and import_jobs.running(session, import_id)
    if held:
        # Another worker runs it, or one died running it (this task came back when it was
        # lost): look again once such a claim would be stale.
        raise self.retry(countdown=import_jobs.STALE_AFTER.total_seconds())


@app.task(name="newsletter.plan_edition")
def plan_edition(edition_id: int) -> None:
    with db.session_scope() as session:
        planning.plan(session, edition_id)


@app.task(name="newsletter.send_batch")
def send_batch(delivery_ids: list[int]) -> None:
    with db.session_scope() as session:
        batch.send_batch(session, delivery_ids, _transport())


@app.task(name="newsletter.alert_article")
def alert_article(article_id: int) -> None:
    with db.session_scope() as session:
        alerts.on_published(session, article_id)


@app.task(name="newsletter.close_alert_window")
def close_alert_window(edition_id: int) -> None:
    with db.session_scope() as session:
        alerts.close_due(session, edition_id)


@app.task(name="newsletter.close_alert_windows")
def close_alert_windows() -> None:
    with db.session_scope() as session:
        alerts.close_due(session)


@app.task(name="newsletter.relay")
def relay() -> None:
    with db.session_scope() as session:
        reconcile.tick(session)


@app.task(name="newsletter.poll_feeds")
def poll_feeds() -> None:
    with db.session_scope() as session:
        feeds.poll(session)


@app.task(name="newsletter.schedule_tick")
def schedule_tick() -> None:
    with db.session_scope() as session:
        schedule.tick(session)


@app.task(name="newsletter.prune")
def prune() -> None:
    with db.session_scope() as session:
        retention.prune_by_setting(session)


@app.task(name="newsletter.send_test", autoretry_for=(mailer.TemporaryFailure,),
          retry_backoff=30, max_retries=5)
def send_test(to: str, email: str, tags: str, frequency: str) -> None:
    """``email`` or ``tags`` (comma-separated topic slugs) names the preview; "" for neither."""
    with db.session_scope() as session:
        preview.send_test(session, to, _transport(), email=email or None,
                          tags=tags.split(",") if tags else None, frequency=frequency or None)


# On a queue of its own ("webhooks"): a worker started with -Q webhooks takes them away from
# the one sending email; in one worker on both queues a run is still bounded (BUDGET_S,
# WEBHOOK_TIMEOUT_S, an endpoint that failed is skipped for the rest of the run).
@app.task(name="newsletter.deliver_webhooks", queue="webhooks")
def deliver_webhooks() -> None:
    with db.session_scope() as session:
        while fanout.fan_out(session) == fanout.BATCH:
            session.commit()
        session.commit()
        webhook_delivery.send_due(session)
        webhook_delivery.prune(session)
