"""Keeping link tokens and addresses out of logs (access logs included).

A token in an unsubscribe, preferences or confirm URL is the reader's key to their data, and
the admin API names readers by address in its paths: an access log holding them hands both
to whoever reads logs (shippers, dashboards, support tickets). Paths under these prefixes
keep only the prefix; a query keeps its names but not a value that is an address or token.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

# Every path segment after one of these is a token or an address.
SECRET_PREFIXES = ("/confirm/", "/preferences/", "/unsubscribe/", "/resubscribe/", "/emails/",
                   "/my-data/", "/api/subscribers/")
SECRET_QUERY_NAMES = frozenset({"email", "token", "address"})
REDACTED = "[redacted]"

# The same prefixes inside free text (a URL in a message); linear: a class run, no nesting.
_LINK = re.compile("(" + "|".join(re.escape(p) for p in SECRET_PREFIXES) + r")[^\s?#\"'<>]+")


def redact_target(target: str) -> str:
    """``/unsubscribe/TOKEN?email=a@b`` → ``/unsubscribe/[redacted]?email=[redacted]``."""
    path, mark, query = target.partition("?")
    for prefix in SECRET_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            path = prefix + REDACTED
            break
    else:
        if "@" in path or "%40" in path.lower():
            path = "/".join(REDACTED if "@" in unquote(part) else part
                            for part in path.split("/"))
    return path + mark + (_redact_query(query) if query else "")


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and (unquote(name).lower() in SECRET_QUERY_NAMES or "@" in unquote(value)):
            value = REDACTED
        pairs.append(name + eq + value)
    return "&".join(pairs)


def redact_links(text: str) -> str:
    """Every token or address path inside ``text`` cut back to its prefix."""
    if not any(prefix in text for prefix in SECRET_PREFIXES):
        return text
    return _LINK.sub(lambda m: m.group(1) + REDACTED, text)


class RedactAccessLog(logging.Filter):
    """For uvicorn's access logger: its records carry the request target as args[2]."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


class RedactLinks(logging.Filter):
    """For our own handlers: a message that quotes one of our links loses its token."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the formatter reports it as it would have
            return True
        redacted = redact_links(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_access_log_redaction() -> None:
    """Put the filter on uvicorn's access logger (idempotent; after uvicorn's dictConfig)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessLog) for f in access.filters):
        access.addFilter(RedactAccessLog())
