"""The editor's commands: articles, feeds, readers, editions, bounces."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from newsletter import db
from newsletter.cli.app import app, console, record
from newsletter.config import get_settings
from newsletter.editions import reports
from newsletter.editions import requests as editions
from newsletter.errors import Conflict, NotFound
from newsletter.states import FINISHED


@app.command()
def publish(
    file: Annotated[str, typer.Argument(help="JSON file with one article or a list; - for stdin")],
) -> None:
    """Publish (or update) articles from JSON."""
    from newsletter.newsroom import articles

    raw = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        console.print(f"[red]not valid JSON:[/] {exc}")
        raise typer.Exit(2) from None
    items = data if isinstance(data, list) else [data]
    with db.session_scope() as session:
        try:
            # Noted as each is done: a later item may update the same article again.
            results = [(r.outcome, r.article.id, r.article.title)
                       for r in (articles.upsert(session, item) for item in items)]
            for outcome, article_id, title in results:
                if outcome != "unchanged":
                    record(session, "article.publish", f"article:{article_id}",
                           {"title": title, "created": outcome == "created"})
        except articles.ArticleError as exc:
            console.print(f"[red]nothing published:[/] {exc}")
            raise typer.Exit(2) from None
    for outcome, article_id, title in results:
        console.print(f"{outcome} {article_id}: {title}", markup=False)


@app.command("import-subscribers")
def import_subscribers(
    file: Annotated[Path, typer.Argument(help="CSV with a header: email, topics (';' or '|' "
                                              "between them), frequency, consent_date, source",
                                         exists=True, dir_okay=False)],
) -> None:
    """Import readers from another tool; rows with a consent date are active at once."""
    import csv

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from newsletter.readers import imports

    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            total = max(sum(1 for _ in f) - 1, 0)
        # One transaction: a file that turns out unreadable halfway imports nothing.
        with file.open(newline="", encoding="utf-8-sig") as f, db.session_scope() as session:
            rows = imports.read_csv_rows(f)
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
                task = bar.add_task("importing", total=total)
                # Row numbers are the file's line numbers: the header is line 1.
                result = imports.import_readers(session, rows, first_row=2,
                                                progress=lambda n: bar.advance(task, n))
            record(session, "readers.import", "readers",
                   {"created": result.created, "updated": result.updated,
                    "unchanged": result.unchanged, "skipped": result.skipped})
    except (imports.ImportRowError, UnicodeDecodeError, csv.Error) as exc:
        reason = "the file is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc
        console.print(f"[red]nothing imported:[/] {reason}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"created {result.created}, updated {result.updated}, "
                  f"unchanged {result.unchanged}, skipped {result.skipped}")
    for number, reason in result.errors[:20]:
        console.print(f"  line {number}: {reason}", markup=False)
    if len(result.errors) > 20:
        console.print(f"  … and {len(result.errors) - 20} more")


@app.command()
def unpublish(article: Annotated[str, typer.Argument(metavar="ID_OR_URL")]) -> None:
    """Withdraw an article: out of every delivery not yet sent, and of later editions."""
    from newsletter.editions import withdrawal
    from newsletter.newsroom import articles

    with db.session_scope() as session:
        try:
            done = withdrawal.unpublish(session, articles.find(session, article).id)
            record(session, "article.unpublish", f"article:{done.article.id}",
                   {"deliveries_changed": done.deliveries_changed})
        except articles.ArticleNotFound as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from None
    console.print(f"unpublished {done.article.id}: {done.article.title}", markup=False)
    console.print(f"taken out of {done.deliveries_changed} unsent deliveries "
                  f"({done.deliveries_suppressed} left empty, so not sent)")


@app.command("import-feed")
def import_feed(
    source: Annotated[str, typer.Argument(metavar="URL|PATH", help="RSS 2.0 or Atom feed")],
    default_tag: Annotated[str | None, typer.Option(
        help="Tag for entries without a category (else they are skipped).")] = None,
) -> None:
    """Publish or update the entries of an RSS or Atom feed."""
    from newsletter.newsroom import feeds

    with db.session_scope() as session:
        try:
            result = feeds.import_feed(session, source, default_tag=default_tag)
            record(session, "feed.import", source[:200],
                   {"created": result.created, "updated": result.updated})
        except feeds.FeedError as exc:
            console.print(f"[red]feed not imported:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
    console.print(f"{result.created} created, {result.updated} updated, "
                  f"{result.unchanged} unchanged, {result.skipped} skipped")
    for reason in result.reasons:
        console.print(f"  skipped {reason}", markup=False, highlight=False)


@app.command("bounces")
def ingest_bounces(
    path: Annotated[Path, typer.Argument(help="A Maildir, an mbox file or one message file")],
) -> None:
    """Read bounces (RFC 3464 DSNs) and complaints (ARF) about messages we sent (VERP token or
    Message-ID): suppress the readers they condemn; reports naming nothing we sent change
    nothing and are counted as unmatched."""
    from newsletter.readers import bounces

    with db.session_scope() as session:
        try:
            result = bounces.ingest_path(session, path)
            if result.suppressed:
                record(session, "suppression.add", "suppressions",
                       {"suppressed": result.suppressed, "hard": result.hard,
                        "complaints": result.complaints, "source": "mailbox"})
        except bounces.BounceSourceError as exc:
            console.print(f"[red]nothing read:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
    console.print(f"hard {result.hard}, soft {result.soft}, complaints {result.complaints}, "
                  f"unmatched {result.unmatched}, ignored {result.ignored}, "
                  f"suppressed {result.suppressed}"
                  + (f" ({result.duplicates} already seen)" if result.duplicates else ""),
                  highlight=False)


@app.command()
def send(
    frequency: Annotated[str | None, typer.Option(help="daily or weekly.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        help="Only articles on this topic, by slug (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Plan only: count readers, emails and distinct digests; send nothing.",
    )] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Show progress until the edition is sent.")] = False,
    test_to: Annotated[str | None, typer.Option(
        "--test-to", help="Send the preview (--email or --tag) as one [TEST] email to ADDR.",
    )] = None,
    email: Annotated[str | None, typer.Option(
        help="With --test-to: the reader whose next digest to send.")] = None,
    note: Annotated[str | None, typer.Option(
        "--note", help="The editor's note: a short intro at the top of every digest "
                       "of this edition (plain text; a blank line starts a paragraph).")] = None,
) -> None:
    """Request a digest edition now (or a dry run, or a test send of a preview)."""
    if test_to is not None:
        _test_send(test_to, email=email, tags=tag, frequency=frequency)
        return
    if email is not None or frequency is None:
        console.print("[red]give --frequency daily|weekly (--email goes with --test-to)[/]")
        raise typer.Exit(2)
    with db.session_scope() as session:
        try:
            edition = editions.request(session, frequency, tags=tag, dry_run=dry_run,
                                       source="cli", note=note)
            record(session, "edition.send", f"edition:{edition.id}",
                   {"frequency": frequency, "tags": tag, "dry_run": dry_run,
                    "note": bool(edition.note)})
        except editions.EditionError as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(2) from None
    dry = " (dry run: nothing will be sent)" if dry_run else ""
    console.print(f"edition {edition.id} requested{dry}")
    if dry_run or wait:
        report = _follow(edition.id)
        console.print(_report_table(report))
        if report["status"] != "done":
            raise typer.Exit(1)


def _test_send(to: str, *, email: str | None, tags: list[str] | None,
               frequency: str | None) -> None:
    from newsletter.editions import preview as previews

    with db.session_scope() as session:
        try:
            result = previews.request_test_send(session, to, email=email, tags=tags,
                                                frequency=frequency)
            record(session, "edition.test_send", "edition:test",
                   {"articles": result.article_count, "frequency": result.frequency,
                    "tags": tags})
        except previews.PreviewError as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(2) from None
        except NotFound as exc:  # no such reader, or nothing to send them
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    console.print(f"test send queued to {to}: {previews.TEST_PREFIX}{result.subject} "
                  f"({_articles(result.article_count)})", markup=False, highlight=False)


def _follow(edition_id: int, poll: float = 0.5) -> dict:
    """A live progress bar (sent + failed + skipped of planned) until the edition finishes."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("edition {task.fields[id]} {task.description}"),
               BarColumn(), TextColumn("{task.fields[done]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("requested", total=None, id=edition_id, done="")
        while True:
            with db.session_scope() as session:
                report = reports.report(session, edition_id)
            c, status = report["counts"], report["status"]
            handled = c["sent"] + c["failed"] + c["skipped_suppressed"]
            finished = status in FINISHED
            # While planning the total still grows: the bar pulses until it is known.
            total = None if status in ("open", "planning") else max(c["planned"], 1)
            progress.update(task, description=status, total=total,
                            completed=handled if c["planned"] or not finished else 1,
                            done=f"{handled}/{c['planned']}")
            if finished:
                return report
            time.sleep(poll)


def _articles(n: int) -> str:
    return f"{n} article{'' if n == 1 else 's'}"


def _when(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    """An ISO instant in the site's time zone."""
    if not value:
        return "-"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(value).astimezone(ZoneInfo(get_settings().timezone)).strftime(fmt)


def _report_table(r: dict):
    from rich.table import Table

    c, plan = r["counts"], r.get("plan") or {}
    what = f"{r['frequency']} {r['kind']}" + (f" on {', '.join(r['tags'])}" if r["tags"] else "")
    table = Table(title=escape(f"Edition {r['id']}: {what}{' (dry run)' if r['dry_run'] else ''}"),
                  show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    table.add_row("status", r["status"],
                  r.get("error") or (f"period {r['period']}" if r.get("period") else ""))
    for key in ("requested_at", "started_at", "finished_at"):
        table.add_row(key.removesuffix("_at"), _when(r[key]), "")
    if r["dry_run"]:
        table.add_row("readers considered", str(plan.get("readers", "-")), "")
        table.add_row("would send", str(plan.get("emails", "-")), "emails")
        table.add_row("distinct digests", str(plan.get("distinct_digests", "-")), "")
        table.add_row("articles", str(plan.get("articles", "-")), "")
        return table
    table.add_row("planned", str(c["planned"]),
                  f"of {plan['readers']} readers considered" if plan else "")
    table.add_row("sent", str(c["sent"]), "")
    table.add_row("failed", str(c["failed"]),
                  f"{c['failed_temporary']} temporary (gave up), {c['failed_permanent']} permanent")
    for failure in r.get("failures", []):
        table.add_row("", str(failure["count"]), escape(failure["reason"]))
    table.add_row("skipped", str(c["skipped"]),
                  f"{c['skipped_empty']} nothing new, {c['skipped_suppressed']} suppressed")
    table.add_row("unsubscribed", str(c["unsubscribed"]), "from this edition's links")
    if c["queued"]:
        table.add_row("still queued", str(c["queued"]), "")
    table.add_row("distinct digests", str(r["distinct_digests"]), "")
    if plan:
        table.add_row("articles", str(plan.get("articles", "-")), "")
    return table


@app.command()
def stats(
    edition_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """What an edition did: status, counts, timings."""
    with db.session_scope() as session:
        try:
            report = reports.report(session, edition_id)
        except editions.EditionNotFound as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    if as_json:
        console.print_json(data=report)
    else:
        console.print(_report_table(report))


@app.command()
def resume(edition_id: int) -> None:
    """Continue a paused edition (after fixing what paused it: see `stats`)."""
    from newsletter.editions import reconcile

    with db.session_scope() as session:
        try:
            done = reconcile.resume(session, edition_id)
            record(session, "edition.resume", f"edition:{edition_id}", done)
        except (editions.EditionNotFound, reconcile.NotPaused) as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    console.print(f"edition {edition_id} resumed: {done['queued']} deliveries queued")


@app.command()
def requeue(edition_id: int) -> None:
    """Send again an edition's dead letter (deliveries that gave up after retrying)."""
    from newsletter.editions import reconcile

    with db.session_scope() as session:
        try:
            done = reconcile.requeue_dead(session, edition_id)
            record(session, "edition.requeue", f"edition:{edition_id}", done)
        except (editions.EditionNotFound, Conflict) as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    console.print(f"edition {edition_id}: {done['requeued']} deliveries requeued")


@app.command("editions")
def list_editions(
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="The reports as JSON.")] = False,
) -> None:
    """The latest editions with their status and counts."""
    from rich.table import Table

    with db.session_scope() as session:
        latest = reports.recent(session, limit)
    if as_json:
        console.print_json(data=latest)
        return
    table = Table(title=f"Recent editions (times in {get_settings().timezone})",
                  title_justify="left")
    for name in ("id", "requested", "edition", "source", "status", "planned", "sent", "failed",
                 "skipped", "unsub."):
        table.add_column(name, justify="right" if name in ("id", "planned", "sent", "failed",
                                                           "skipped", "unsub.") else "left")
    for r in latest:
        c = r["counts"]
        what = escape(f"{r['frequency']} {r['kind']}"
                      + (f" [{', '.join(r['tags'])}]" if r["tags"] else ""))
        planned = (f"({(r.get('plan') or {}).get('emails', '-')} dry)" if r["dry_run"]
                   else str(c["planned"]))
        table.add_row(str(r["id"]), _when(r["requested_at"], "%m-%d %H:%M"), what, r["source"],
                      r["status"], planned, str(c["sent"]), str(c["failed"]),
                      str(c["skipped"]), str(c["unsubscribed"]))
    console.print(table)


@app.command()
def preview(
    email: Annotated[str | None, typer.Option(help="The reader whose next digest to show.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        help="Or: a reader following exactly these topics, by slug (repeatable).")] = None,
    frequency: Annotated[str | None, typer.Option(
        help="daily or weekly (default: the reader's, or weekly).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Where to write the HTML [default: ./var/preview.html].")] = None,
) -> None:
    """Render the digest a reader (or topic set) would get next to an HTML file; changes nothing."""
    from newsletter.editions import preview as previews

    with db.session_scope() as session:
        try:
            result = previews.build(session, email=email, tags=tag, frequency=frequency)
        except previews.PreviewError as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(2) from None
        except NotFound as exc:  # no such reader, or nothing to send them
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    path = out or get_settings().var_dir / "preview.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.html, encoding="utf-8")
    console.print(f"subject: {result.subject}", markup=False, highlight=False)
    fixes = f", {result.correction_count} corrections" if result.correction_count else ""
    console.print(f"{_articles(result.article_count)}{fixes} for {result.recipient} "
                  f"({result.frequency}); written to {path}", markup=False, highlight=False)
    if result.reader_status not in (None, "active"):
        console.print(f"[yellow]note: this reader is {result.reader_status}: the next edition "
                      "will not reach them[/]")
