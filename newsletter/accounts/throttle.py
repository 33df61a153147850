"""Sign-in throttling: per account (a lock on the editor's row) and per client address.

An account that fails LOGIN_MAX_FAILURES times, each within LOGIN_LOCK_MINUTES of the one
before, is locked for LOGIN_LOCK_MINUTES; the answer says until when. An address (the door
passes it already keyed: an IPv4 address or an IPv6 /64) may fail LOGIN_ADDRESS_LIMIT times
whichever accounts it tries, so guessing across many accounts is slowed too. Address counts
live in Redis when the broker is Redis (shared by every web process), else in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from limits import RateLimitItem, parse, storage, strategies

from newsletter.config import get_settings
from newsletter.models import Editor

_SCOPE = "console-sign-in"


@lru_cache(maxsize=4)
def _limiter(url: str) -> strategies.MovingWindowRateLimiter:
    return strategies.MovingWindowRateLimiter(storage.storage_from_string(url))


def _address_limit() -> tuple[strategies.MovingWindowRateLimiter, RateLimitItem]:
    settings = get_settings()
    url = settings.broker if settings.broker.startswith(("redis://", "rediss://")) else "memory://"
    return _limiter(url), parse(settings.login_address_limit)


def address_blocked_until(address: str) -> datetime | None:
    """When ``address`` may try again, if it has spent its failures; else None."""
    limiter, item = _address_limit()
    if limiter.test(item, _SCOPE, address):
        return None
    reset = limiter.get_window_stats(item, _SCOPE, address).reset_time
    return datetime.fromtimestamp(reset, UTC)


def address_failed(address: str) -> None:
    limiter, item = _address_limit()
    limiter.hit(item, _SCOPE, address)


def locked_until(editor: Editor, now: datetime) -> datetime | None:
    return editor.locked_until if editor.locked_until and editor.locked_until > now else None


def account_failed(editor: Editor, now: datetime) -> bool:
    """Count one wrong password; True when this one locks the account."""
    settings = get_settings()
    window = timedelta(minutes=settings.login_lock_minutes)
    recent = editor.last_failed_at is not None and now - editor.last_failed_at <= window
    editor.failed_logins = (editor.failed_logins if recent else 0) + 1
    editor.last_failed_at = now
    if editor.failed_logins < settings.login_max_failures:
        return False
    editor.locked_until, editor.failed_logins = now + window, 0
    return True


def account_succeeded(editor: Editor) -> None:
    editor.failed_logins, editor.last_failed_at, editor.locked_until = 0, None, None
