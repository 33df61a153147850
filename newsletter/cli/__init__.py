"""The ``newsletter`` command."""

# Importing the command modules registers their commands, running ones first in --help.
from newsletter.cli import ops  # noqa: F401, I001
from newsletter.cli import editor  # noqa: F401, E402
from newsletter.cli import editors  # noqa: F401, E402
from newsletter.cli import topics  # noqa: F401, E402
from newsletter.cli.app import app, console  # noqa: F401 - console: tests capture it


def main() -> None:
    app()
