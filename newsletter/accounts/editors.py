"""Editor accounts: add, list, change role, reset password, remove.

Each change is recorded in the audit log by the caller, which knows who asked and from where.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from newsletter.accounts import passwords
from newsletter.errors import AccountError, EditorNotFound, LastAdmin
from newsletter.models import ApiToken, ConsoleSession, Editor, utcnow
from newsletter.states import EditorRole

# Deliberately plain: one @, a dot in the domain, no spaces. An editor's address is typed
# by an admin, not a stranger, and the sign-in form compares it exactly.
_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


def normalise(email: str) -> str:
    return email.strip().lower()


def role_of(value: str) -> EditorRole:
    try:
        return EditorRole(value.strip().lower())
    except ValueError:
        raise AccountError(f"unknown role {value!r}: editor or admin") from None


def find(session: Session, email: str) -> Editor | None:
    """The active editor with this address, or None."""
    return session.scalar(select(Editor).where(
        Editor.email == normalise(email), Editor.removed_at.is_(None)))


def get(session: Session, editor_id: int) -> Editor:
    editor = session.get(Editor, editor_id)
    if editor is None or editor.removed_at is not None:
        raise EditorNotFound(f"no editor with id {editor_id}")
    return editor


def by_email(session: Session, email: str) -> Editor:
    editor = find(session, email)
    if editor is None:
        raise EditorNotFound(f"no editor {normalise(email)}")
    return editor


def active(session: Session, limit: int = 50, offset: int = 0) -> list[Editor]:
    return list(session.scalars(select(Editor).where(Editor.removed_at.is_(None))
                                .order_by(Editor.email).limit(limit).offset(offset)))


def count_active(session: Session) -> int:
    return session.scalar(select(func.count(Editor.id)).where(Editor.removed_at.is_(None))) or 0


def add(session: Session, email: str, role: str, password: str) -> Editor:
    """A new account (or a removed one back, with a new password and role)."""
    address = normalise(email)
    if len(address) > 320 or not _ADDRESS.fullmatch(address):
        raise AccountError(f"{email!r} is not an email address")
    chosen = role_of(role)
    hashed = passwords.hash_password(password)
    editor = session.scalar(select(Editor).where(Editor.email == address))
    if editor is not None and editor.removed_at is None:
        raise AccountError(f"{address} already has an account")
    if editor is None:
        editor = Editor(email=address, role=chosen, password_hash=hashed)
        session.add(editor)
    else:
        editor.role, editor.password_hash, editor.removed_at = chosen, hashed, None
        editor.failed_logins, editor.locked_until, editor.created_at = 0, None, utcnow()
    session.flush()
    return editor


def set_role(session: Session, editor: Editor, role: str) -> bool:
    """Change the role; False when it already was. The last admin stays an admin."""
    chosen = role_of(role)
    if editor.role == chosen:
        return False
    if editor.role == EditorRole.ADMIN:
        _keep_an_admin(session, editor)
    editor.role = chosen
    return True


def reset_password(session: Session, editor: Editor, password: str) -> None:
    """A new password; every browser signed in as them is signed out, and the lock lifts."""
    editor.password_hash = passwords.hash_password(password)
    editor.failed_logins, editor.locked_until = 0, None
    session.execute(delete(ConsoleSession).where(ConsoleSession.editor_id == editor.id))


def remove(session: Session, editor: Editor) -> None:
    """Sign them out everywhere, revoke their tokens, keep the row for the audit log."""
    if editor.role == EditorRole.ADMIN:
        _keep_an_admin(session, editor)
    now = utcnow()
    editor.removed_at = now
    session.execute(delete(ConsoleSession).where(ConsoleSession.editor_id == editor.id))
    session.execute(update(ApiToken).where(ApiToken.editor_id == editor.id,
                                           ApiToken.revoked_at.is_(None)).values(revoked_at=now))


def _keep_an_admin(session: Session, leaving: Editor) -> None:
    others = session.scalar(select(func.count(Editor.id)).where(
        Editor.role == EditorRole.ADMIN, Editor.removed_at.is_(None), Editor.id != leaving.id))
    if not others:
        raise LastAdmin(f"{leaving.email} is the last admin: make another admin first")
