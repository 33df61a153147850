"""Prometheus metrics.

Events are counted where they happen — emails and SMTP latency in the worker processes
(prometheus_client's multiprocess mode, aggregated by the worker's metrics server),
subscribe and unsubscribe requests in the web process. What the ledger knows (outbox
backlog, edition progress, queue lag) is read from the database at scrape time, so every
replica reports the same truth and nothing is lost when a process restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from newsletter import db
from newsletter.config import get_settings
from newsletter.models import Delivery, Edition, OutboxEvent, Reader, utcnow
from newsletter.states import UNSENT

EMAILS = Counter("newsletter_emails_total", "Emails by kind and outcome (sent, retry, failed, "
                 "suppressed) and failure reason", ["kind", "outcome", "reason"])
SMTP_SECONDS = Histogram("newsletter_smtp_send_seconds", "One SMTP transaction, MAIL to final "
                         "reply", buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                           5, 10, 30))
BATCH_SECONDS = Histogram("newsletter_batch_seconds", "One send_batch task, claim to record",
                          buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
SUBSCRIBE_REQUESTS = Counter("newsletter_subscribe_requests_total", "POST /subscribe by outcome",
                             ["outcome"])
PREMAILER_RUNS = Counter("newsletter_premailer_runs_total", "CSS inlining runs (per fragment or "
                         "layout, never per reader)")
DIGEST_RENDERS = Counter("newsletter_digest_renders_total", "Digests rendered (Jinja and "
                         "assembly; once per distinct content per worker process at best)")
UNSUBSCRIBES = Counter("newsletter_unsubscribes_total", "Unsubscribes by method", ["method"])


class LedgerCollector(Collector):
    """Gauges read from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        with db.session_scope() as session:
            backlog, oldest = session.execute(
                select(func.count(), func.min(OutboxEvent.created_at))
                .where(OutboxEvent.dispatched_at.is_(None))).one()
            yield GaugeMetricFamily("newsletter_outbox_backlog",
                                    "Outbox events not yet handed to the broker", value=backlog)
            yield GaugeMetricFamily("newsletter_outbox_oldest_age_seconds",
                                    "Age of the oldest undispatched outbox event",
                                    value=(now - oldest).total_seconds() if oldest else 0)

            queued = session.execute(
                select(func.count(), func.min(Delivery.created_at))
                .where(Delivery.status.in_(UNSENT))).one()
            yield GaugeMetricFamily("newsletter_deliveries_waiting",
                                    "Deliveries queued or waiting for a retry", value=queued[0])
            yield GaugeMetricFamily("newsletter_delivery_lag_seconds",
                                    "Age of the oldest delivery still waiting to be sent",
                                    value=(now - queued[1]).total_seconds() if queued[1] else 0)

            readers = GaugeMetricFamily("newsletter_readers", "Readers by status",
                                        labels=["status"])
            for status, count in session.execute(
                    select(Reader.status, func.count()).group_by(Reader.status)):
                readers.add_metric([status], count)
            yield readers

            recent = session.scalars(select(Edition).order_by(Edition.id.desc()).limit(20)).all()
            progress = GaugeMetricFamily("newsletter_edition_deliveries",
                                         "Deliveries of recent editions by status",
                                         labels=["edition_id", "kind", "status"])
            duration = GaugeMetricFamily("newsletter_edition_duration_seconds",
                                         "Start to finish (or to now) of recent editions",
                                         labels=["edition_id", "kind", "status"])
            counts = session.execute(
                select(Delivery.edition_id, Delivery.status, func.count())
                .where(Delivery.edition_id.in_([e.id for e in recent]))
                .group_by(Delivery.edition_id, Delivery.status)).all()
            kinds = {e.id: e.kind for e in recent}
            for edition_id, status, count in counts:
                progress.add_metric([str(edition_id), kinds[edition_id], status], count)
            for e in recent:
                if e.started_at:
                    end = e.finished_at or now
                    duration.add_metric([str(e.id), e.kind, e.status],
                                        (end - e.started_at).total_seconds())
            yield progress
            yield duration
        yield GaugeMetricFamily("newsletter_broker_queue_depth",
                                "Tasks waiting in the broker's newsletter queue",
                                value=broker_queue_depth())


def broker_queue_depth() -> float:
    settings = get_settings()
    if settings.uses_embedded_broker:
        folder = Path(settings.broker_dir) / "queue"
        return sum(1 for _ in folder.glob("*.msg")) if folder.exists() else 0
    if settings.broker.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(settings.broker, socket_timeout=2)
        try:
            return client.llen("newsletter")
        finally:
            client.close()
    return float("nan")


_ledger = CollectorRegistry(auto_describe=False)
_ledger.register(LedgerCollector())


def exposition() -> bytes:
    """The web process's /metrics: its own counters plus the ledger gauges."""
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY) + generate_latest(_ledger)
