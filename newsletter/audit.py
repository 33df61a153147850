"""The audit log: who changed what, when and from where, through the console, the API or the CLI.

Every door that changes something calls ``record`` in the same transaction as the change,
so an entry exists exactly when the change does. The log is append-only: this module has no
update or delete, and on PostgreSQL a trigger refuses both (migration 0016). Readers are
named by id (``reader:7``), never by address, so erasing a reader leaves the log as it is
and it holds nothing to erase.

Actors: an editor's address (console), ``token:NAME`` (an API token; ``token:ADMIN_TOKEN``
for the automation token), ``cli``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import AuditEntry, utcnow

# The actions doors record, for the console's filter (a new one needs no change here to be
# recorded, only to be offered in the filter's list).
ACTIONS = (
    "article.publish", "article.unpublish", "feed.import",
    "edition.send", "edition.resume", "edition.requeue", "edition.test_send",
    "topic.change",
    "readers.import", "reader.export", "reader.erase", "suppression.add", "suppression.remove",
    "editor.add", "editor.remove", "editor.role", "editor.password", "editor.sign_in",
    "editor.locked", "token.create", "token.revoke", "webhook.create", "webhook.delete",
    "webhook.retry",
)
CLI = "cli"
MAX_DETAIL_CHARS = 500


def record(session: Session, actor: str, action: str, target: str = "",
           details: dict[str, Any] | None = None, ip: str | None = None) -> AuditEntry:
    """Add one entry to ``session`` (committed with the change it describes).

    ``details`` is JSON: counts, ids, titles. Never a reader's address: erasure must not
    have to touch the log.
    """
    entry = AuditEntry(at=utcnow(), actor=actor[:320], action=action[:64], target=target[:255],
                       details=_bounded(details or {}), ip=(ip or None) and ip[:64])
    session.add(entry)
    return entry


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    # An article title or a feed URL is outside text: kept, but not at any length.
    return {key: value[:MAX_DETAIL_CHARS] if isinstance(value, str) else value
            for key, value in details.items()}


@dataclass(frozen=True)
class Filter:
    actor: str = ""
    action: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    target: str = ""  # "edition:12": what one thing went through

    def apply(self, stmt):
        if self.target:
            stmt = stmt.where(AuditEntry.target == self.target)
        if self.actor:
            stmt = stmt.where(AuditEntry.actor == self.actor)
        if self.action:
            stmt = stmt.where(AuditEntry.action == self.action)
        if self.since:
            stmt = stmt.where(AuditEntry.at >= self.since)
        if self.until:
            stmt = stmt.where(AuditEntry.at < self.until)
        return stmt


def entries(session: Session, where: Filter = Filter(), limit: int = 50,
            offset: int = 0) -> list[AuditEntry]:
    """Entries matching ``where``, newest first."""
    stmt = where.apply(select(AuditEntry)).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def count(session: Session, where: Filter = Filter()) -> int:
    return session.scalar(where.apply(select(func.count(AuditEntry.id)))) or 0


def actors(session: Session) -> list[str]:
    """Everyone who appears in the log, for the console's filter."""
    return list(session.scalars(select(AuditEntry.actor).distinct().order_by(AuditEntry.actor)))


def to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
            "action": entry.action, "target": entry.target, "details": entry.details,
            "ip": entry.ip}
