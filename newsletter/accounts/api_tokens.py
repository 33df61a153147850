"""Editors' API tokens: made once and shown once, kept as a hash, revocable.

A token acts with its editor's role (their current one: demoting an editor demotes their
tokens) and is named ``token:NAME`` in the audit log, so names are unique among live tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.errors import AccountError, EditorNotFound
from newsletter.models import ApiToken, Editor, utcnow

TOKEN_PREFIX = "nlt_"
VISIBLE = 12  # "nlt_" and 8 characters: enough to tell tokens apart, useless to guess
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
TOUCH_EVERY = timedelta(seconds=60)


def token_hash(token: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to guess or brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def create(session: Session, editor: Editor, name: str | None = None) -> tuple[str, ApiToken]:
    """A new token for ``editor``: the token itself (to show once) and its row."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    name = (name or "").strip() or f"{editor.email.split('@')[0]}-{token[4:VISIBLE]}"
    if not _NAME.fullmatch(name):
        raise AccountError("a token name has 1 to 64 letters, digits, spaces, dots, "
                           "hyphens or underscores, and starts with a letter or digit")
    if session.scalar(select(func.count(ApiToken.id)).where(
            ApiToken.name == name, ApiToken.revoked_at.is_(None))):
        raise AccountError(f"a token named {name!r} already exists: choose another name")
    row = ApiToken(editor_id=editor.id, name=name, token_hash=token_hash(token),
                   prefix=token[:VISIBLE], editor=editor)
    session.add(row)
    session.flush()
    return token, row


def authenticate(session: Session, token: str, now: datetime | None = None) -> ApiToken | None:
    """The live token this bearer value is, its use noted; None if unknown or revoked."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None or row.editor.removed_at is not None:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        row.last_used_at = now
    return row


def get(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise EditorNotFound(f"no token with id {token_id}")
    return row


def live_by_name(session: Session, name: str) -> ApiToken:
    row = session.scalar(select(ApiToken).where(ApiToken.name == name.strip(),
                                                ApiToken.revoked_at.is_(None)))
    if row is None:
        raise EditorNotFound(f"no live token named {name!r}")
    return row


def listing(session: Session, editor: Editor | None, limit: int = 50, offset: int = 0):
    """Tokens, live ones first then newest first: ``editor``'s, or everyone's (None)."""
    stmt = select(ApiToken)
    if editor is not None:
        stmt = stmt.where(ApiToken.editor_id == editor.id)
    stmt = stmt.order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(),
                         ApiToken.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def count(session: Session, editor: Editor | None) -> int:
    stmt = select(func.count(ApiToken.id))
    if editor is not None:
        stmt = stmt.where(ApiToken.editor_id == editor.id)
    return session.scalar(stmt) or 0


def revoke(session: Session, row: ApiToken) -> bool:
    """False when it already was."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
