"""``newsletter editors``: console accounts and their API tokens, from the command line.

The first admin is made here (nobody can sign in to make them). Every change is recorded in
the audit log with the actor ``cli`` and this machine's name.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from newsletter import db
from newsletter.accounts import api_tokens, editors
from newsletter.cli.app import app, console, record
from newsletter.config import get_settings
from newsletter.errors import AccountError, EditorNotFound, LastAdmin

editors_app = typer.Typer(help="Console accounts (editors and admins) and API tokens.",
                          no_args_is_help=True)
app.add_typer(editors_app, name="editors")

PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from the first line of standard input.")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _fail(exc: Exception, code: int) -> typer.Exit:
    console.print(f"[red]{escape(str(exc))}[/]", highlight=False)
    return typer.Exit(code)


@editors_app.command("add")
def add(email: str,
        role: Annotated[str, typer.Option(help="editor or admin.")] = "editor",
        password_stdin: PasswordStdin = False) -> None:
    """Create an account (asks for its password, or reads it with --password-stdin)."""
    password = _password(password_stdin)
    try:
        with db.session_scope() as session:
            editor = editors.add(session, email, role, password)
            record(session, "editor.add", f"editor:{editor.id}",
                   {"email": editor.email, "role": editor.role})
    except AccountError as exc:
        raise _fail(exc, 2) from None
    console.print(f"added {editor.email} ({editor.role})", markup=False, highlight=False)


@editors_app.command("list")
def list_editors() -> None:
    """Every account, with its role and whether it is locked."""
    from rich.table import Table

    from newsletter.models import utcnow

    with db.session_scope() as session:
        rows = editors.active(session, limit=10_000)
    table = Table("email", "role", "since", "locked until", title_justify="left")
    now = utcnow()
    for editor in rows:
        locked = editor.locked_until if editor.locked_until and editor.locked_until > now else None
        table.add_row(escape(editor.email), editor.role, local_time(editor.created_at, "%Y-%m-%d"),
                      local_time(locked) if locked else "")
    console.print(table)


def local_time(value, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(get_settings().timezone)).strftime(fmt)


@editors_app.command("remove")
def remove(email: str) -> None:
    """Remove an account: signed out everywhere, its tokens revoked."""
    try:
        with db.session_scope() as session:
            editor = editors.by_email(session, email)
            editors.remove(session, editor)
            record(session, "editor.remove", f"editor:{editor.id}", {"email": editor.email})
    except (EditorNotFound, LastAdmin) as exc:
        raise _fail(exc, 1) from None
    console.print(f"removed {editor.email}", markup=False, highlight=False)


@editors_app.command("reset-password")
def reset_password(email: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password (and sign the account out everywhere, lifting any lock)."""
    password = _password(password_stdin)
    try:
        with db.session_scope() as session:
            editor = editors.by_email(session, email)
            editors.reset_password(session, editor, password)
            record(session, "editor.password", f"editor:{editor.id}", {"email": editor.email})
    except EditorNotFound as exc:
        raise _fail(exc, 1) from None
    except AccountError as exc:
        raise _fail(exc, 2) from None
    console.print(f"new password set for {editor.email}", markup=False, highlight=False)


@editors_app.command("token")
def token(email: str,
          name: Annotated[str | None, typer.Option(help="What uses it (unique).")] = None) -> None:
    """Make an API token acting as this editor; printed once, never again."""
    try:
        with db.session_scope() as session:
            editor = editors.by_email(session, email)
            secret, row = api_tokens.create(session, editor, name)
            record(session, "token.create", f"token:{row.id}",
                   {"name": row.name, "prefix": row.prefix, "owner": editor.email})
    except EditorNotFound as exc:
        raise _fail(exc, 1) from None
    except AccountError as exc:
        raise _fail(exc, 2) from None
    console.print(f"token {row.name} for {editor.email} ({editor.role}); shown only now:",
                  markup=False, highlight=False)
    typer.echo(secret)


@editors_app.command("revoke-token")
def revoke_token(name: str) -> None:
    """Revoke a live API token by its name: it opens nothing from now on."""
    try:
        with db.session_scope() as session:
            row = api_tokens.live_by_name(session, name)
            api_tokens.revoke(session, row)
            record(session, "token.revoke", f"token:{row.id}",
                   {"name": row.name, "owner": row.editor.email})
    except EditorNotFound as exc:
        raise _fail(exc, 1) from None
    console.print(f"revoked {row.name}", markup=False, highlight=False)
