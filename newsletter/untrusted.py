"""Text from outside (articles, feeds, forms, mail) as it may enter: no control characters.

C0 control characters have no place in a headline or a summary, no mail client shows them,
and our renderers use some as their own boundaries; PostgreSQL refuses NUL outright. So
ingestion strips them from prose and refuses them in URLs and identifiers (a link that
holds one is broken, and guessing what was meant would publish a different link), and
every value a template prints is stripped again (rendering._finalize), for rows stored
before this rule.
"""

from __future__ import annotations

import re

# All of C0 and DEL but tab, line feed and carriage return, which prose may hold.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_controls(text: str) -> str:
    """``text`` without C0 control characters (tab, LF and CR are kept)."""
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text


def has_controls(text: str) -> bool:
    return _CONTROLS.search(text) is not None
