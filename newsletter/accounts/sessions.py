"""Console sessions: one row per signed-in browser, its token kept only as a hash.

A session ends after CONSOLE_IDLE_MINUTES without a request, and CONSOLE_SESSION_HOURS
after sign-in whatever happens; signing out, a password reset or removal end it at once.
Every function takes ``now`` so that expiry is tested with a clock, not with sleeps.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from newsletter.config import get_settings
from newsletter.models import ConsoleSession, Editor, utcnow

# last_seen_at is written at most this often: a page's burst of requests is one write, and
# idle expiry (an hour by default) does not need to be finer.
TOUCH_EVERY = timedelta(seconds=60)


def token_hash(token: str) -> str:
    # The token is 256 random bits, so a fast hash is enough: nothing to guess or brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Limits:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def configured(cls) -> Limits:
        settings = get_settings()
        return cls(timedelta(minutes=settings.console_idle_minutes),
                   timedelta(hours=settings.console_session_hours))

    def expires_at(self, row: ConsoleSession) -> datetime:
        return min(row.last_seen_at + self.idle, row.created_at + self.absolute)


def start(session: Session, editor: Editor, *, ip: str | None, user_agent: str | None,
          now: datetime | None = None) -> tuple[str, ConsoleSession]:
    """A new session for ``editor``: the token for the cookie (never stored) and its row."""
    now = now or utcnow()
    _forget_expired(session, editor.id, now)
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(token_hash=token_hash(token), editor_id=editor.id, created_at=now,
                         last_seen_at=now, csrf_secret=secrets.token_urlsafe(32),
                         ip=ip and ip[:64], user_agent=user_agent and user_agent[:512])
    session.add(row)
    session.flush()
    return token, row


def find(session: Session, token: str | None, now: datetime | None = None) -> ConsoleSession | None:
    """The live session this cookie names (its last use noted), or None: unknown, expired,
    or its editor removed. An expired row is deleted."""
    if not token or len(token) > 128:
        return None
    now = now or utcnow()
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))
    if row is None:
        return None
    if now >= Limits.configured().expires_at(row) or row.editor.removed_at is not None:
        session.delete(row)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def end(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))


def _forget_expired(session: Session, editor_id: int, now: datetime) -> None:
    limits = Limits.configured()
    session.execute(delete(ConsoleSession).where(
        ConsoleSession.editor_id == editor_id,
        or_(ConsoleSession.last_seen_at <= now - limits.idle,
            ConsoleSession.created_at <= now - limits.absolute)))
