"""The ``newsletter`` Typer app; commands register on it from ops.py and editor.py."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(help="Topic newsletters for a news site: digests and alerts over SMTP.",
                  no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
