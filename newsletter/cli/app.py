"""The ``newsletter`` Typer app; commands register on it from ops.py and editor.py."""

from __future__ import annotations

import socket

import typer
from rich.console import Console

from newsletter import audit

app = typer.Typer(help="Topic newsletters for a news site: digests and alerts over SMTP.",
                  no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()


def record(session, action: str, target: str = "", details: dict | None = None) -> None:
    """Note a change made from the command line in the audit log (actor ``cli``, and this
    machine's name for where), in the transaction of the change."""
    audit.record(session, audit.CLI, action, target, details, socket.gethostname()[:64])
