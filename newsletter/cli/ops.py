"""Running the service: demo, web, worker, beat, run, database."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Annotated

import typer

from newsletter import db, processes
from newsletter.cli import preflight
from newsletter.cli.app import app, console, db_app, record
from newsletter.config import Settings, child_env, get_settings


def _safe_settings() -> Settings:
    """The settings, once preflight has found them safe to serve with; else exit 2."""
    settings = get_settings()
    try:
        preflight.check(settings)
    except preflight.UnsafeSettings as exc:
        typer.echo(f"newsletter: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def demo(readers: Annotated[int, typer.Option(min=1, help="How many readers to seed.")] = 60) -> None:
    """Seed a sample newsroom and readers and send a weekly edition through a real worker."""
    from newsletter.demo import run

    summary = run(readers=readers, console=console)
    if summary["status"] != "done" or summary["emails_sent"] == 0:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema."""
    get_settings().ensure_var()
    db.upgrade()
    console.print(f"database at head: {get_settings().db_url.split('@')[-1]}")


@app.command()
def web(host: str = "127.0.0.1", port: int = 8000,
        workers: Annotated[int | None, typer.Option(
            min=1, help="Processes to serve with (default: NEWSLETTER_WEB_WORKERS).")] = None) -> None:
    """Serve the reader pages and the admin API."""
    from newsletter.web import serve

    settings = _safe_settings()
    settings.ensure_var()
    serve.serve(host, port, workers or settings.web_workers)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2,
           node: Annotated[str | None, typer.Option(
               help="Celery node name (-n), e.g. sender1@%h: one per worker node sharing "
                    "the broker (default: celery@<hostname>).")] = None) -> None:
    """Run a Celery worker (planning and sending)."""
    settings = _safe_settings()
    settings.ensure_var()
    cmd = processes.worker_command(concurrency, node=node)
    os.execve(cmd[0], cmd, processes.worker_env(child_env(settings), settings.var_dir))


@app.command()
def beat() -> None:
    """Run the scheduler (daily/weekly editions, the outbox relay)."""
    settings = _safe_settings()
    settings.ensure_var()
    cmd = processes.beat_command()
    os.execve(cmd[0], cmd, child_env(settings))


@app.command()
def run(host: str = "127.0.0.1", port: int = 8000,
        concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Web, worker and beat together; with no SMTP_URL, a capture server into ./var/outbox."""
    import uvicorn

    from newsletter.config import LOCAL_SMTP_URL
    from newsletter.mail.capture import CaptureServer
    from newsletter.web.serve import proxy_options

    settings = _safe_settings()
    settings.ensure_var()
    db.upgrade()
    capture = None
    if not settings.smtp_url:
        port_ = int(LOCAL_SMTP_URL.rsplit(":", 1)[-1])
        capture = CaptureServer(settings.var_dir / "outbox", port=port_).start()
        console.print(f"capturing mail into {settings.var_dir / 'outbox'} ({LOCAL_SMTP_URL})")
    children = [processes.start_worker(child_env(settings), concurrency=concurrency,
                                       logfile=settings.var_dir / "worker.log"),
                processes.start_beat(child_env(settings), logfile=settings.var_dir / "beat.log")]
    console.print(f"worker and beat logging to {settings.var_dir}/worker.log, beat.log")
    try:
        uvicorn.run("newsletter.web.app:app", host=host, port=port, **proxy_options())
    finally:
        for child in children:
            processes.stop(child)
        if capture:
            capture.stop()


@app.command()
def relay() -> None:
    """Dispatch undispatched outbox events and due retries now (what beat does every tick)."""
    from datetime import timedelta

    from newsletter import events
    from newsletter.editions import deliveries

    with db.session_scope() as session:
        sent = events.dispatch_pending(session, older_than=timedelta(0))
        requeued = deliveries.requeue_due(session)
    console.print(f"dispatched {sent} outbox events; {requeued} deliveries due for retry requeued")


# A prune keeps at least a day: delivery rows are the ledger of editions still sending,
# retried or reconciled within hours, and a typo ("90m" for "90d") must not empty it.
_UNITS = {"d": 86400, "h": 3600}
_SHORTEST_RETENTION = 86400


def _retention(text: str) -> timedelta:
    """'90d' or '12h' into a duration; a clear error for anything else or under a day."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([dh])\s*", text.lower())
    if not match:
        raise typer.BadParameter(f"{text!r}: give a number of days or hours, like 90d or 36h")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds < _SHORTEST_RETENTION:
        raise typer.BadParameter(f"{text!r}: a prune keeps at least one day (1d or 24h)")
    return timedelta(seconds=seconds)


def _checked_retention(text: str) -> str:
    _retention(text)  # an error here names the option
    return text


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", callback=_checked_retention,
        help="Drop delivery detail of editions finished longer ago: 90d, 36h.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
) -> None:
    """Drop old delivery rows, dispatched outbox events and delivered webhooks (reports,
    "never twice", consent and audit are kept); beat does it daily at RETENTION_DAYS."""
    from newsletter.editions import retention

    age = _retention(older_than)
    with db.session_scope() as session:
        gone = retention.prune(session, age, dry_run=dry_run)
        if not dry_run:
            record(session, "retention.prune", f"older_than:{older_than.strip()}",
                   gone.as_dict())
    verb = "would drop" if dry_run else "dropped"
    console.print(f"{verb}: {gone.deliveries} deliveries of {gone.editions} editions, "
                  f"{gone.outbox_events} outbox events, "
                  f"{gone.webhook_deliveries} webhook deliveries")
