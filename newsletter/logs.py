"""Logging for web and workers: JSON lines (or plain text) with edition and delivery ids.

Readers appear by id, never by address, at info level: logs travel further than the
database does (log shippers, support tickets).

Log lines quote text from outside (SMTP replies, bounce diagnostics, exceptions about
them), so each field is cut to FIELD_MAX characters (a traceback to its last EXC_MAX)
before the address redaction runs, and that redaction is one linear pattern.
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


# Anchored at the start of a run of address characters (the look-behind): a long run with
# no "@" is scanned once, not once from each of its characters.
_ADDRESS = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)")
FIELD_MAX = 8192
EXC_MAX = 16384
# How far back from a cut to look for a space: never leave half an address to the redaction.
_CUT_SLACK = 320


def redact(text: str) -> str:
    """Mask every email address in ``text`` (SMTP replies and tracebacks quote them)."""
    return _ADDRESS.sub(r"\1***@\2", text)


def cut(text: str, limit: int = FIELD_MAX) -> str:
    """``text`` at most about ``limit`` characters long, cut between words, saying so."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = max(head.rfind(" ", limit - _CUT_SLACK), head.rfind("\n", limit - _CUT_SLACK))
    head = head[:space] if space > 0 else head[:limit - _CUT_SLACK]
    return f"{head} …[{len(text) - len(head)} characters cut]"


def _cut_tail(text: str, limit: int = EXC_MAX) -> str:
    # A traceback's end says what went wrong: keep that.
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    space = tail.find("\n", 0, _CUT_SLACK)
    tail = tail[space + 1:] if space >= 0 else tail[_CUT_SLACK:]
    return f"[{len(text) - len(tail)} characters cut]… {tail}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._format(record)) if record.levelno > logging.DEBUG else \
            self._format(record)

    def _format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": cut(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = cut(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exc"] = _cut_tail(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = cut(super().formatMessage(self._prepared(record)))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            base += "\n" + _cut_tail(record.exc_text)
        extras = {k: cut(str(getattr(record, k))) for k in CONTEXT if hasattr(record, k)}
        line = base + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")
        return redact(line) if record.levelno > logging.DEBUG else line

    def _prepared(self, record: logging.LogRecord) -> logging.LogRecord:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        return record


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
