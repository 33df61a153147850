"""The Celery app: Redis when NEWSLETTER_BROKER_URL is set, else the filesystem broker."""

from __future__ import annotations

import gc
import os

from celery import Celery
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from newsletter import db, logs
from newsletter.config import Settings, get_settings


def make_app(settings: Settings) -> Celery:
    settings.ensure_var()
    app = Celery("newsletter", broker=settings.broker, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only when it finished, and given back if its worker dies:
        # the domain functions are idempotent (claims, unique rows), so a redelivery is safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="newsletter",
        # A receiver's slowness must not hold up email: webhooks have a queue of their own.
        task_routes={"newsletter.deliver_webhooks": {"queue": "webhooks"}},
        broker_connection_retry_on_startup=True,
        # A stuck task must end before the delivery lease (30 < 40 min) takes its rows and
        # before Redis's visibility timeout (1 h) redelivers it; the soft limit first lets
        # send_batch record what it sent and give back the rest. SMTP timeouts (30 s per
        # command) and the pause after a run of failures keep real batches far below this.
        task_soft_time_limit=1500,
        task_time_limit=1800,
        timezone=settings.timezone,
        beat_schedule={
            "relay": {"task": "newsletter.relay", "schedule": settings.relay_interval_s},
            # The durable path for alert windows whose doorbell (an ETA task) was lost.
            "alert-windows": {"task": "newsletter.close_alert_windows", "schedule": 10.0},
            # Daily and weekly editions: the tick asks newsletter.editions.schedule whether a period
            # is due (site time zone) and requests it once, catching up after downtime.
            "schedule-tick": {"task": "newsletter.schedule_tick",
                              "schedule": settings.schedule_tick_s},
            # Configured feeds (NEWSLETTER_FEEDS); with none the task does nothing.
            "poll-feeds": {"task": "newsletter.poll_feeds",
                           "schedule": settings.feed_poll_minutes * 60},
            # Webhook retries when due, and the fan-out of events whose doorbell was lost.
            "webhooks": {"task": "newsletter.deliver_webhooks",
                         "schedule": settings.webhook_tick_s},
            # Retention at RETENTION_DAYS (0: off): once a day, in batches (editions/retention).
            "prune": {"task": "newsletter.prune", "schedule": 86400.0},
        },
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
    )
    if settings.uses_embedded_broker:
        folder = str(settings.broker_dir / "queue")
        app.conf.broker_transport_options = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "processed_folder": str(settings.broker_dir / "processed"),
            "store_processed": False,
            # The filesystem transport polls; 0.1 s keeps the demo and tests snappy.
            "polling_interval": 0.1,
        }
        app.conf.broker_transport = "workers.filesystem_transport:Transport"
        # No fanout on the filesystem transport: remote control would only log errors.
        app.conf.worker_enable_remote_control = False
    else:
        # Longer than any batch can take, so Redis does not redeliver a task still running.
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
    return app


_apps: dict[str, Celery] = {}
# The app of the settings object last asked about: get_app() runs for every task published,
# and resolving the var dir (a realpath: a system call per path component) cost more than
# the lookup it keys.
_last: tuple[Settings, Celery] | None = None


def get_app() -> Celery:
    """The app for the current settings (tests switch brokers within one process)."""
    global _last
    settings = get_settings()
    last = _last
    if last is not None and last[0] is settings:
        return last[1]
    key = f"{settings.broker}|{settings.var_dir.resolve()}"
    if key not in _apps:
        _apps[key] = make_app(settings)
    _last = (settings, _apps[key])
    return _apps[key]


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # A forked child must not share its parent's database connections.
    db.dispose_engines()
    # What is loaded by now (Celery, SQLAlchemy, the templates) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks it. And a
    # send allocates many short-lived objects (rows, contexts, message pieces) that refcounting
    # frees: with the default 700 allocations per young collection they were promoted and
    # triggered full walks of the caches (6,144 encoded digests, fragments) ~every 2 s, 5 % of
    # a sending process's time. 10,000 lets them die young; a young collection stays ~0.1 ms.
    # (20,000 deliveries in-process: collector 1.47 -> 0.19 s; bench/RESULTS.md.)
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@setup_logging.connect
def _logging(**_kwargs) -> None:
    # Our format (JSON lines in production) for Celery's own records too.
    logs.configure()


@worker_init.connect
def _metrics_server(**_kwargs) -> None:
    # Pool processes write their counters to PROMETHEUS_MULTIPROC_DIR (set by
    # `newsletter worker`); the main process serves the sum of them.
    port = get_settings().worker_metrics_port
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)


@worker_process_shutdown.connect
def _metrics_dead(pid=None, **_kwargs) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


app = get_app()
