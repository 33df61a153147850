"""``newsletter topics``: the topics editors curate for readers (add, list, retire).

A change is noted in the audit log (actor ``cli``, action ``topic.change``) in its own
transaction."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from newsletter import db
from newsletter.cli.app import app, console, record
from newsletter.errors import NewsletterError
from newsletter.newsroom import topics

topics_app = typer.Typer(help="Topics readers may follow: each covers one or more tags.",
                         no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The topic's name, as readers see it.")],
    tag: Annotated[list[str] | None, typer.Option(
        help="A tag it covers (repeatable; default: the name's slug).")] = None,
    description: Annotated[str, typer.Option(help="One line shown on the form.")] = "",
    group: Annotated[str | None, typer.Option(help="The form's section it sits in.")] = None,
) -> None:
    """Offer a topic to readers (nothing changes if one of that name exists)."""
    try:
        with db.session_scope() as session:
            before = topics.snapshot(session, name)
            topic, created = topics.create(session, name, tags=tag, description=description,
                                           group=group)
            shown = topics.to_dict(topic)
            if details := topics.changes(before, shown):
                record(session, "topic.change", f"topic:{topic.slug}", details)
    except NewsletterError as exc:
        console.print(f"[red]no topic added:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    word = "added" if created else "exists"
    console.print(f"{word} {shown['slug']}: {shown['name']} (tags: {', '.join(shown['tags'])})",
                  markup=False, highlight=False)


@topics_app.command("list")
def list_topics() -> None:
    """Every topic: its tags, group, followers; retired ones last."""
    with db.session_scope() as session:
        rows = topics.listing(session)
        uncovered = [t.slug for t in topics.uncovered_tags(session)]
    for r in rows:
        state = " [retired]" if r["retired"] else ""
        group = f" ({r['group']})" if r["group"] else ""
        console.print(f"{r['slug']}{group}: {r['name']}{state} — {r['followers']} readers; "
                      f"tags: {', '.join(r['tags'])}", markup=False, highlight=False)
    if not rows:
        console.print("no topics yet: `newsletter topics add NAME` offers one to readers")
    if uncovered:
        console.print(f"tags in no topic (not offered to readers): {', '.join(uncovered)}",
                      markup=False, highlight=False)


@topics_app.command("retire")
def retire(
    slug: Annotated[str, typer.Argument(help="The topic's slug.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Take a topic off the forms and out of later editions; says first whom it affects."""
    try:
        with db.session_scope() as session:
            counts = topics.retirement(session, slug)
    except NewsletterError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    console.print(f"{counts.followers} readers follow {counts.slug}; {counts.only_topic} of "
                  "them follow nothing else and will get nothing until they choose a topic",
                  markup=False, highlight=False)
    if not yes and not typer.confirm(f"Retire {counts.slug}?"):
        raise typer.Exit(1)
    with db.session_scope() as session:
        before = topics.snapshot(session, slug)
        done = topics.retire(session, slug)
        if details := topics.changes(before, topics.snapshot(session, slug)):
            record(session, "topic.change", f"topic:{done.slug}", {
                **details, "followers": done.followers, "follow_nothing_else": done.only_topic})
    console.print(f"retired {counts.slug}", markup=False, highlight=False)
