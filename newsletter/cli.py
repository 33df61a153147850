"""The ``newsletter`` command."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from newsletter import db, editions, processes
from newsletter.config import child_env, get_settings

app = typer.Typer(help="Topic newsletters for a news site: digests and alerts over SMTP.",
                  no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()


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
def web(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the reader pages and the admin API."""
    import uvicorn

    get_settings().ensure_var()
    uvicorn.run("newsletter.web.app:app", host=host, port=port, proxy_headers=True)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Run a Celery worker (planning and sending)."""
    settings = get_settings()
    settings.ensure_var()
    cmd = processes.worker_command(concurrency)
    os.execve(cmd[0], cmd, child_env(settings))


@app.command()
def beat() -> None:
    """Run the scheduler (daily/weekly editions, the outbox relay)."""
    settings = get_settings()
    settings.ensure_var()
    cmd = processes.beat_command()
    os.execve(cmd[0], cmd, child_env(settings))


@app.command()
def run(host: str = "127.0.0.1", port: int = 8000,
        concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Web, worker and beat together; with no SMTP_URL, a capture server into ./var/outbox."""
    import uvicorn

    from newsletter.capture import CaptureServer
    from newsletter.config import LOCAL_SMTP_URL

    settings = get_settings()
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
        uvicorn.run("newsletter.web.app:app", host=host, port=port)
    finally:
        for child in children:
            processes.stop(child)
        if capture:
            capture.stop()


@app.command()
def publish(file: Annotated[str, typer.Argument(help="JSON file with one article or a list; - for stdin")]) -> None:
    """Publish (or update) articles from JSON."""
    from newsletter import articles

    raw = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        console.print(f"[red]not valid JSON:[/] {exc}")
        raise typer.Exit(2) from None
    items = data if isinstance(data, list) else [data]
    with db.session_scope() as session:
        try:
            results = [articles.publish(session, item) for item in items]
        except articles.ArticleError as exc:
            console.print(f"[red]nothing published:[/] {exc}")
            raise typer.Exit(2) from None
    for article, created in results:
        console.print(f"{'created' if created else 'updated'} {article.id}: {article.title}")


@app.command()
def send(
    frequency: Annotated[str, typer.Option(help="daily or weekly")],
    tag: Annotated[list[str] | None, typer.Option(help="Only articles on this tag (repeatable).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the edition is sent.")] = False,
) -> None:
    """Request a digest edition now."""
    with db.session_scope() as session:
        try:
            edition = editions.request(session, frequency, tags=tag, source="cli")
        except editions.EditionError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    console.print(f"edition {edition.id} requested")
    while wait:
        with db.session_scope() as session:
            report = editions.report(session, edition.id)
        if report["status"] in ("done", "failed", "paused"):
            console.print_json(data=report)
            break
        time.sleep(0.5)


@app.command()
def stats(edition_id: int) -> None:
    """What an edition did: status and counts."""
    with db.session_scope() as session:
        try:
            console.print_json(data=editions.report(session, edition_id))
        except editions.EditionNotFound as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from None


def main() -> None:
    app()
