"""``newsletter demo``: a sample newsroom through the whole pipeline on embedded defaults."""

from __future__ import annotations

import mailbox
import os
import random
import re
import shutil
import time
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from rich.console import Console

from newsletter import db, processes
from newsletter.config import child_env, reload_settings
from newsletter.demo.newsroom import ARTICLES, TOPICS
from newsletter.editions import reports
from newsletter.editions import requests as editions
from newsletter.mail.capture import CaptureServer
from newsletter.models import utcnow
from newsletter.newsroom import articles
from newsletter.newsroom import topics as curation
from newsletter.readers import subscriptions

FIRST = ["amira", "bilal", "chloe", "dana", "elias", "farah", "ghassan", "hana", "imad", "jana",
         "khaled", "leila", "maya", "nadim", "olga", "paul", "rami", "sara", "tariq", "yasmin"]
DOMAINS = ["example.com", "example.org", "example.net"]
CONFIRM_LINK = re.compile(r"/confirm/([A-Za-z0-9_.\-]+)")


def run(readers: int = 60, console: Console | None = None) -> dict:
    """Run the demo; returns the summary it prints."""
    console = console or Console()
    started = time.monotonic()
    var = Path("var").resolve()
    outbox = var / "outbox"
    # The demo owns these files: a fresh database and outbox each run, so that the weekly
    # edition has something to send every time.
    for path in (var / "demo.db", var / "demo.db-wal", var / "demo.db-shm"):
        path.unlink(missing_ok=True)
    shutil.rmtree(outbox, ignore_errors=True)
    shutil.rmtree(var / "broker", ignore_errors=True)
    os.environ["NEWSLETTER_VAR_DIR"] = str(var)
    os.environ["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{var / 'demo.db'}"
    os.environ.pop("NEWSLETTER_BROKER_URL", None)
    os.environ.setdefault("NEWSLETTER_ADMIN_TOKEN", "demo")

    with CaptureServer(outbox) as smtp:
        os.environ["NEWSLETTER_SMTP_URL"] = smtp.url
        settings = reload_settings()
        settings.ensure_var()
        db.dispose_engines()
        console.print(f"[bold]newsletter demo[/] — database {settings.db_url}, "
                      f"SMTP capture {smtp.url} → {outbox}")
        db.upgrade()
        with db.session_scope() as session:
            _seed_articles(session)
        console.print(f"  published {len(ARTICLES)} articles")

        log = var / "demo-worker.log"
        log.unlink(missing_ok=True)
        worker = processes.start_worker(child_env(settings), logfile=log, loglevel="WARNING")
        try:
            people = _subscribe_readers(readers)
            console.print(f"  {len(people)} readers subscribed; waiting for their confirmation "
                          "emails …")
            confirmed = _confirm_from_outbox(outbox, people)
            console.print(f"  {confirmed} readers confirmed through the link in their email")
            with db.session_scope() as session:
                edition_id = editions.request(session, "weekly", source="demo").id
            console.print(f"  weekly edition {edition_id} requested; the worker is sending …")
            report = _wait_done(edition_id)
        finally:
            processes.stop(worker)
        digests = [m for m in _messages(outbox) if "/confirm/" not in _text(m)]
    summary = {
        "readers": len(people),
        "confirmed": confirmed,
        "edition": edition_id,
        "status": report["status"],
        "emails_sent": report["counts"]["sent"],
        "failed": report["counts"]["failed"],
        "distinct_digests": report["distinct_digests"],
        "outbox": str(outbox),
        "messages_in_outbox": len(digests),
        "seconds": round(time.monotonic() - started, 1),
    }
    _print_summary(console, summary, outbox)
    return summary


def _seed_articles(session) -> None:
    now = utcnow()
    for i, (title, summary, tags, author) in enumerate(ARTICLES):
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
        articles.publish(session, {
            "url": f"https://levantledger.example/news/{slug}",
            "title": title, "summary": summary, "tags": tags, "author": author,
            # Spread over the past six days, newest first.
            "published_at": now - timedelta(hours=3 + i * 4.4),
        })
    for group, name, description in TOPICS:  # what the editors offer readers
        curation.create(session, name, description=description, group=group)


def _subscribe_readers(count: int) -> list[str]:
    rng = random.Random(2026)
    with db.session_scope() as session:
        slugs = sorted(t.slug for _, group in curation.offered(session) for t in group)
    people = []
    for i in range(count):
        email = f"{FIRST[i % len(FIRST)]}.{i}@{DOMAINS[i % len(DOMAINS)]}"
        topics = rng.sample(slugs, rng.choice([1, 1, 2, 2, 3, 4]))
        frequency = "daily" if i % 10 == 9 else "weekly"
        with db.session_scope() as session:
            subscriptions.subscribe(session, email, topics, frequency, consent_given=True,
                                    source="demo", ip="127.0.0.1", user_agent="newsletter demo")
        people.append(email)
    return people


def _messages(outbox: Path) -> list:
    box = mailbox.Maildir(str(outbox), create=True)
    return [message_from_bytes(box.get_bytes(key), policy=policy.default) for key in box.iterkeys()]


def _text(message) -> str:
    part = message.get_body(("plain",))
    return part.get_content() if part else ""


def _confirm_from_outbox(outbox: Path, people: list[str], timeout: float = 120) -> int:
    """Confirm every reader with the token from the email they actually received."""
    wanted, confirmed = set(people), 0
    deadline = time.monotonic() + timeout
    while wanted and time.monotonic() < deadline:
        for message in _messages(outbox):
            to = str(message["To"])
            match = CONFIRM_LINK.search(_text(message))
            if to in wanted and match:
                with db.session_scope() as session:
                    subscriptions.confirm(session, match.group(1), ip="127.0.0.1",
                                          user_agent="newsletter demo")
                wanted.discard(to)
                confirmed += 1
        time.sleep(0.2)
    if wanted:
        raise TimeoutError(f"{len(wanted)} confirmation emails did not arrive; see var/demo-worker.log")
    return confirmed


def _wait_done(edition_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            report = reports.report(session, edition_id)
        if report["status"] in ("done", "failed", "paused"):
            return report
        time.sleep(0.2)
    raise TimeoutError(f"edition {edition_id} not done after {timeout}s: {report}")


def _print_summary(console: Console, s: dict, outbox: Path) -> None:
    console.print()
    console.print("[bold green]Done.[/]" if s["status"] == "done" else f"[bold red]{s['status']}[/]")
    console.print(f"  readers subscribed and confirmed: {s['confirmed']} of {s['readers']}")
    console.print(f"  weekly edition {s['edition']}: {s['emails_sent']} emails sent, "
                  f"{s['failed']} failed, {s['distinct_digests']} distinct digests")
    console.print(f"  took {s['seconds']} s")
    console.print(f"  open them: {outbox}/new/ (a Maildir: `mutt -f {outbox}`, or any .eml viewer)")
