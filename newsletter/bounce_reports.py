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
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, message_from_string
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
ARF_TYPE = "message/feedback-report"
# Where a report carries the message it is about: whole, or only its headers.
ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
                  "message/global", "message/global-headers")
NOT_COMPLAINTS = ("not-spam", "auth-failure")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"(?<!\d)([245])\d\d(?!\d)")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


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


def parse(raw: bytes) -> list[Report]:
    """The bounce and complaint reports in one raw message; [] for anything else."""
    message = message_from_bytes(raw, policy=compat32)
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
    if ARF_TYPE in types:
        fields = _field_blocks(children[types.index(ARF_TYPE)])
        return _complaints(fields, original, original_id, report_id, reported_at)
    for dsn_type in DSN_TYPES:
        if dsn_type in types:
            blocks = _field_blocks(children[types.index(dsn_type)])
            return _bounces(blocks, original_id, report_id, reported_at)
    return []


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
             reported_at: datetime | None) -> list[Report]:
    # The first block holds the per-message fields; a generator that left it out starts
    # straight with a recipient.
    if blocks and "final-recipient" not in blocks[0]:
        blocks = blocks[1:]
    reports = []
    for block in blocks:
        action = _first(block, "action").lower().split(" ")[0]
        match = _STATUS.search(_first(block, "status"))
        status = ".".join(match.groups()) if match else None
        diagnostic = _typed_value(_first(block, "diagnostic-code"))
        kind = _classify(action, status, diagnostic)
        if kind is None:
            continue
        # The mailbox that failed; Original-Recipient may name an alias or forwarder of
        # which it is one member, and a failing member says nothing about the alias.
        recipient = (_address(_first(block, "final-recipient"))
                     or _address(_first(block, "original-recipient")))
        reports.append(Report(kind, recipient, status, diagnostic, original_id, report_id,
                              reported_at))
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
                reported_at: datetime | None) -> list[Report]:
    fields: dict[str, list[str]] = {}
    for block in blocks:
        for name, values in block.items():
            fields.setdefault(name, []).extend(values)
    feedback_type = _first(fields, "feedback-type").lower() or "abuse"
    if feedback_type in NOT_COMPLAINTS:
        return []
    recipients = [a for a in (_address(v) for v in fields.get("original-rcpt-to", [])) if a]
    if not recipients and original is not None:
        recipients = [a.lower() for _, a in getaddresses(original.get_all("to") or [])
                      if "@" in a]
    agent = _first(fields, "user-agent") or _typed_value(_first(fields, "reporting-mta"))
    diagnostic = f"{feedback_type} report" + (f" from {agent}" if agent else "")
    return [Report("complaint", recipient, None, diagnostic, original_id, report_id,
                   reported_at, feedback_type)
            for recipient in dict.fromkeys(recipients or [None])]


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
    return " ".join(str(value).split())


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
