"""Reading bounce and complaint reports: RFC 3464 DSNs and RFC 5965 ARF feedback reports.

``parse(raw)`` turns one received message into zero or more :class:`Report`. Only the
standard machine-readable formats (``multipart/report``) are read; anything else — an
out-of-office reply, a person writing back, a legacy plain-text bounce — yields nothing.

A DSN recipient block is classified by its Action and Status:

    delivered / relayed / expanded     nothing (a success notice)
    delayed                            soft
    failed, Status 4.x.x               soft (the MTA gave up on a temporary condition)
    failed, Status 5.x.x               hard, except those that say nothing about the
                                       address, which are soft: 5.2.2 mailbox full,
                                       5.2.3 / 5.3.4 message too big, 5.6.x content and
                                       5.7.x policy. A 5.7.1 block (our IP on a blocklist,
                                       a spam filter) hits every reader at one provider at
                                       once; suppressing on it would unsubscribe them all
                                       over one incident. Persistent ones still reach the
                                       soft-bounce limit.
    failed, no Status                  the Diagnostic-Code's SMTP reply (5xx hard), else soft

An ARF report is a complaint unless its Feedback-Type is ``not-spam`` or ``auth-failure``
(an authentication report, not the reader's choice).

Reports come from anywhere, so reading one costs time linear in a bounded part of it: only
the first READ_MAX_BYTES / READ_MAX_LINES are parsed (the fields and the returned
message's headers come first; its body is never needed), a message declaring more than
MAX_MULTIPARTS MIME boundaries is refused (the parser's work grows with lines times
nesting), each field is cut to FIELD_MAX characters and addresses are found with
patterns that never backtrack. A report also says where it could name our message:
``envelope`` (the addresses it was sent to, and the returned message's Return-Path: see
newsletter/verp.py), ``named`` (the addresses it says failed or complained) and
``unsubscribe_urls`` (the returned message's List-Unsubscribe).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, message_from_string
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime

from newsletter.errors import UnreadableReport  # noqa: F401 - re-exported

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
ARF_TYPE = "message/feedback-report"
# Where a report carries the message it is about: whole, or only its headers.
ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
                  "message/global", "message/global-headers")
NOT_COMPLAINTS = ("not-spam", "auth-failure")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"(?<!\d)([245])\d\d(?!\d)")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# An address is a run of address characters with "@domain" after it. Anchored at the start
# of a run (the look-behind), so each run is scanned once: no quadratic backtracking.
_ADDRESS = re.compile(r"(?<![^\s<>@,;:\"'()\[\]\\])[^\s<>@,;:\"'()\[\]\\]+@[A-Za-z0-9.-]+")
_URL = re.compile(r"<(https?://[^<>\s]{1,2000})>")

READ_MAX_BYTES = 128 * 1024
READ_MAX_LINES = 3000
# A DSN nests three or four multiparts (report, returned message, its alternatives); an ARF
# report the same. Sixteen leaves room for any real one.
MAX_MULTIPARTS = 16
FIELD_MAX = 4096
MAX_RECIPIENTS = 100
# Where a report's own headers say whom it was delivered to: our bounce address, for a
# report sent back to a message's envelope sender.
ENVELOPE_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")


@dataclass(frozen=True)
class Report:
    """One recipient's bounce or one complaint, as the report states it."""

    kind: str  # hard | soft | complaint
    recipient: str | None  # lower-cased; None when the report names none (redacted)
    status: str | None  # enhanced status code, "5.1.1"; None for a complaint
    diagnostic: str
    original_message_id: str | None  # our Message-ID, angle brackets included
    # The report's own Message-ID, or a hash of its bytes: what makes a report without
    # an original Message-ID recognisable when it is ingested twice.
    report_id: str
    reported_at: datetime | None  # the report's Date
    feedback_type: str | None = None  # for a complaint: abuse, fraud, other …
    # Addresses the report was delivered to or names as our envelope sender (a VERP token
    # in one of them names the message exactly).
    envelope: tuple[str, ...] = ()
    # Every address the report says this is about (Final- and Original-Recipient, or the
    # complaint's Original-Rcpt-To / the returned message's To), lower-cased.
    named: tuple[str, ...] = ()
    unsubscribe_urls: tuple[str, ...] = ()  # from the returned message's List-Unsubscribe


def parse(raw: bytes) -> list[Report]:
    """The bounce and complaint reports in one raw message; [] for anything else.

    Raises UnreadableReport for a message nested deeper than any report is."""
    message = message_from_bytes(_head(raw), policy=compat32)
    report = _find_report(message)
    if report is None:
        return []
    own_id = _message_id(_header(message, "message-id"))
    report_id = own_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    reported_at = _date(_header(message, "date"))
    children = report.get_payload()
    if not isinstance(children, list):
        return []
    types = [c.get_content_type() for c in children]
    original = _original_headers(children)
    original_id = _message_id(_header(original, "message-id")) if original else None
    envelope = _envelope(message, original)
    context = {"envelope": envelope,
               "unsubscribe_urls": tuple(_URL.findall(_header(original, "list-unsubscribe")))}
    if ARF_TYPE in types:
        fields = _field_blocks(children[types.index(ARF_TYPE)])
        context["envelope"] += tuple(a for block in fields
                                     for v in block.get("original-mail-from", [])
                                     for a in _addresses(v))
        return _complaints(fields, original, original_id, report_id, reported_at, context)
    for dsn_type in DSN_TYPES:
        if dsn_type in types:
            blocks = _field_blocks(children[types.index(dsn_type)])
            if blocks and "final-recipient" not in blocks[0]:
                # The per-message fields: X-Postfix-Sender and the like name our envelope
                # sender too.
                context["envelope"] += tuple(a for values in blocks[0].values()
                                             for v in values for a in _addresses(v))
            return _bounces(blocks, original_id, report_id, reported_at, context)
    return []


def _head(raw: bytes) -> bytes:
    """The part of ``raw`` that is read: whole lines, at most READ_MAX_BYTES and _LINES."""
    head = raw[:READ_MAX_BYTES]
    # The parser ends a line at CR as well as LF: count what it would count.
    head = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = head.split(b"\n", READ_MAX_LINES)
    if len(lines) > READ_MAX_LINES:
        head = b"\n".join(lines[:READ_MAX_LINES]) + b"\n"
    if head.lower().count(b"boundary") > MAX_MULTIPARTS:
        raise UnreadableReport(f"more than {MAX_MULTIPARTS} MIME parts nested: no report is")
    return head


def _envelope(message: Message, original: Message | None) -> tuple[str, ...]:
    found = [a for name in ENVELOPE_HEADERS for v in (message.get_all(name) or [])
             for a in _addresses(str(v))]
    found += _addresses(_header(original, "return-path"))
    return tuple(dict.fromkeys(found))


def _addresses(value: str) -> list[str]:
    """The addr-specs in a header or field value, lower-cased (no parser that recurses)."""
    return [a.lower() for a in _ADDRESS.findall(value[:FIELD_MAX])]


def _find_report(part: Message) -> Message | None:
    """The first multipart/report holding a DSN or ARF part, not looking inside attachments."""
    if part.get_content_type() == "multipart/report":
        payload = part.get_payload()
        if isinstance(payload, list) and any(
                c.get_content_type() in (*DSN_TYPES, ARF_TYPE) for c in payload):
            return part
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for child in part.get_payload():
            found = _find_report(child)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------- DSN (RFC 3464)

def _bounces(blocks: list[dict[str, list[str]]], original_id: str | None, report_id: str,
             reported_at: datetime | None, context: dict) -> list[Report]:
    # The first block holds the per-message fields; a generator that left it out starts
    # straight with a recipient.
    if blocks and "final-recipient" not in blocks[0]:
        blocks = blocks[1:]
    reports = []
    for block in blocks[:MAX_RECIPIENTS]:
        action = _first(block, "action").lower().split(" ")[0]
        match = _STATUS.search(_first(block, "status"))
        status = ".".join(match.groups()) if match else None
        diagnostic = _typed_value(_first(block, "diagnostic-code"))
        kind = _classify(action, status, diagnostic)
        if kind is None:
            continue
        # The mailbox that failed; Original-Recipient may name an alias or forwarder of
        # which it is one member, and a failing member says nothing about the alias.
        final = _address(_first(block, "final-recipient"))
        original = _address(_first(block, "original-recipient"))
        named = tuple(a for a in dict.fromkeys((final, original)) if a)
        reports.append(Report(kind, final or original, status, diagnostic, original_id,
                              report_id, reported_at, named=named, **context))
    return reports


def _classify(action: str, status: str | None, diagnostic: str) -> str | None:
    if action == "delayed":
        return "soft"
    if action != "failed":
        return None  # delivered, relayed, expanded: nothing went wrong
    if status is None:
        code = _REPLY_CODE.search(diagnostic)
        return "hard" if code and code.group(1) == "5" else "soft"
    klass, subject, detail = status.split(".")
    if klass != "5":
        return "soft"
    if subject in ("6", "7") or (subject, detail) in (("2", "2"), ("2", "3"), ("3", "4")):
        return "soft"
    return "hard"


# ---------------------------------------------------------------- ARF (RFC 5965)

def _complaints(blocks: list[dict[str, list[str]]], original: Message | None,
                original_id: str | None, report_id: str,
                reported_at: datetime | None, context: dict) -> list[Report]:
    fields: dict[str, list[str]] = {}
    for block in blocks:
        for name, values in block.items():
            fields.setdefault(name, []).extend(values)
    feedback_type = _first(fields, "feedback-type").lower() or "abuse"
    if feedback_type in NOT_COMPLAINTS:
        return []
    recipients = [a for a in (_address(v) for v in fields.get("original-rcpt-to", [])) if a]
    if not recipients and original is not None:
        recipients = [a for v in (original.get_all("to") or []) for a in _addresses(str(v))]
    recipients = list(dict.fromkeys(recipients))[:MAX_RECIPIENTS]
    agent = _first(fields, "user-agent") or _typed_value(_first(fields, "reporting-mta"))
    diagnostic = f"{feedback_type} report" + (f" from {agent}" if agent else "")
    return [Report("complaint", recipient, None, diagnostic, original_id, report_id,
                   reported_at, feedback_type, named=(recipient,) if recipient else (),
                   **context)
            for recipient in recipients or [None]]


# ---------------------------------------------------------------- fields and headers

def _field_blocks(part: Message) -> list[dict[str, list[str]]]:
    """A report part's header-style fields, block by block (blank lines separate blocks)."""
    payload = part.get_payload()
    texts: list[str] = []
    if isinstance(payload, list):
        # The parser splits message/delivery-status into blocks itself; other message/*
        # types arrive as one embedded "message" whose body holds any further blocks.
        for sub in payload:
            texts.append("".join(f"{k}: {v}\n" for k, v in sub.items()))
            body = sub.get_payload()
            if isinstance(body, str) and body.strip():
                texts.append(body)
    else:
        texts.append(_decoded_text(part))
    blocks = []
    for text in texts:
        for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
            if chunk.strip():
                headers = message_from_string(chunk.strip() + "\n\n", policy=compat32)
                block: dict[str, list[str]] = {}
                for name, value in headers.items():
                    block.setdefault(name.lower(), []).append(_unfold(value))
                if block:
                    blocks.append(block)
    return blocks


def _original_headers(children: list[Message]) -> Message | None:
    for child in children[1:]:
        if child.get_content_type() in ORIGINAL_TYPES:
            payload = child.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
            return message_from_string(_decoded_text(child), policy=compat32)
    return None


def _decoded_text(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    return data.decode("utf-8", "replace")


def _header(message: Message | None, name: str) -> str:
    value = message.get(name) if message is not None else None
    return _unfold(value) if value is not None else ""


def _unfold(value: object) -> str:
    return " ".join(str(value).split())[:FIELD_MAX]


def _first(block: dict[str, list[str]], name: str) -> str:
    values = block.get(name)
    return values[0] if values else ""


def _typed_value(value: str) -> str:
    """``smtp; 550 …`` → ``550 …`` (DSN fields carry a type before the semicolon)."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _address(value: str) -> str | None:
    address = _typed_value(value).strip().strip("<>").strip().lower()
    return address if "@" in address else None


def _message_id(value: str) -> str | None:
    match = _MESSAGE_ID.search(value)
    if match:
        return match.group(0)
    value = value.strip()
    return f"<{value}>" if value and " " not in value and "@" in value else None


def _date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else None
