"""Logging for web and workers: JSON lines (or plain text) with edition and delivery ids.

Readers appear by id, never by address, at info level: logs travel further than the
database does (log shippers, support tickets).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from newsletter.config import get_settings
from newsletter.redaction import RedactLinks

# Fields callers pass with ``extra=`` that belong in the JSON line.
CONTEXT = ("edition_id", "delivery_id", "delivery_ids", "reader_id", "event", "task",
           "counts", "duration_s", "reason", "kind")
_RESERVED = set(vars(logging.makeLogRecord({})))


_ADDRESS = re.compile(r"([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)")


def redact(text: str) -> str:
    """Mask every email address in ``text`` (SMTP replies and tracebacks quote them)."""
    return _ADDRESS.sub(r"\1***@\2", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._format(record)) if record.levelno > logging.DEBUG else \
            self._format(record)

    def _format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: getattr(record, k) for k in CONTEXT if hasattr(record, k)}
        line = base + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")
        return redact(line) if record.levelno > logging.DEBUG else line


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Send every logger's records to stderr in the configured format (idempotent)."""
    settings = get_settings()
    fmt = fmt or settings.log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactLinks())  # tokens in quoted links, as in the access log
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or settings.log_level).upper())


def mask_email(email: str) -> str:
    """'amira.k@example.com' → 'a***@example.com', for the rare log line that needs a hint."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
