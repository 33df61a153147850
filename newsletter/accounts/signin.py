"""Signing in: a password checked under both throttles, then a console session.

The outcome is returned, not raised: the door commits the failure count (and a lock) before
it answers, which an exception would roll back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.accounts import editors, passwords, sessions, throttle
from newsletter.models import ConsoleSession, Editor, utcnow


@dataclass(frozen=True)
class Outcome:
    editor: Editor | None = None
    token: str | None = None  # for the cookie; set only on success
    session: ConsoleSession | None = None
    # Why not: "wrong" (email or password: one answer for both), "account" (locked),
    # "address" (too many failures from there).
    refused: str | None = None
    until: datetime | None = None  # when a locked account or address may try again
    just_locked: bool = False


def attempt(session: Session, email: str, password: str, *, address: str, ip: str | None,
            user_agent: str | None, now: datetime | None = None) -> Outcome:
    now = now or utcnow()
    blocked = throttle.address_blocked_until(address)
    if blocked:
        return Outcome(refused="address", until=blocked)
    editor = editors.find(session, email)
    if editor is not None and (until := throttle.locked_until(editor, now)):
        return Outcome(editor=editor, refused="account", until=until)
    if not passwords.verify(password, editor.password_hash if editor else None):
        throttle.address_failed(address)
        if editor is None:
            return Outcome(refused="wrong")
        if throttle.account_failed(editor, now):
            return Outcome(editor=editor, refused="account", until=editor.locked_until,
                           just_locked=True)
        return Outcome(editor=editor, refused="wrong")
    throttle.account_succeeded(editor)
    token, row = sessions.start(session, editor, ip=ip, user_agent=user_agent, now=now)
    return Outcome(editor=editor, token=token, session=row)
