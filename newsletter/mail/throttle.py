"""The global send rate (``NEWSLETTER_SMTP_RATE`` messages/second, 0 = unlimited).

A token bucket: with a Redis broker the bucket lives in Redis (one Lua script call per
message, so every worker process on every machine shares it); on the embedded default
(filesystem broker, one machine) it lives in the process.

Each call *reserves* a token, letting the bucket go into debt, and sleeps off the debt:
one round trip per message, and waiters are served in the order they asked.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Protocol

__all__ = ["Ceiling", "FileCeiling", "LocalBucket", "Limiter", "RedisBucket", "ceiling_for", "limiter_for"]

# Tokens the bucket holds when idle: a tenth of a second of sending, at least one message.
# Small, so that a relay with a per-second limit never sees a burst far above it.
BURST_SECONDS = 0.1


class Limiter(Protocol):
    def acquire(self) -> float:
        """Wait until one message may go; returns the seconds waited."""


def _burst(rate: float) -> float:
    return max(1.0, rate * BURST_SECONDS)


class LocalBucket:
    """A token bucket shared by the threads of one process."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst = rate, burst or _burst(rate)
        self._tokens, self._at = self.burst, time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate) - 1
            self._at = now
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)
        return wait


# KEYS[1] bucket; ARGV rate, burst. Redis's own clock, so machines need not agree on time.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
if tokens < 0 then return tostring(-tokens / rate) end
return '0'
"""


class RedisBucket:
    """A token bucket in Redis, shared by every process that uses the same key."""

    def __init__(self, url: str, rate: float, key: str = "newsletter:smtp-rate",
                 burst: float | None = None) -> None:
        import redis

        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst, self.key = rate, burst or _burst(rate), key
        self._redis = redis.Redis.from_url(url)
        self._script = self._redis.register_script(_SCRIPT)

    def acquire(self) -> float:
        wait = float(self._script(keys=[self.key], args=[self.rate, self.burst]))
        if wait > 0 and math.isfinite(wait):
            time.sleep(wait)
        return wait


def limiter_for(rate: float, broker_url: str) -> Limiter | None:
    """The limiter for a rate and broker: None when unlimited, Redis-backed on a Redis broker."""
    if rate <= 0:
        return None
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBucket(broker_url, rate)
    return LocalBucket(rate)


class Ceiling:
    """At most ``per_minute`` events in any sliding minute, shared through ``storage_url``.

    Unlike the bucket above it never waits: ``take`` says how long until there is room, so
    the caller can put the work off (confirmations are deferred, not slept on in a worker).
    """

    def __init__(self, per_minute: int, storage_url: str, key: str) -> None:
        from limits import RateLimitItemPerMinute, storage, strategies

        self.item = RateLimitItemPerMinute(per_minute)
        self.key = key
        self._limiter = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(storage_url))

    def take(self) -> float:
        """Count one event if there is room (0.0); else the seconds until there is."""
        if self._limiter.hit(self.item, self.key):
            return 0.0
        reset_at = self._limiter.get_window_stats(self.item, self.key).reset_time
        return max(1.0, reset_at - time.time())


class FileCeiling:
    """A Ceiling kept in a locked file: shared by the processes of one machine, which is
    where the embedded (filesystem) broker's workers all run."""

    def __init__(self, per_minute: int, path: Path) -> None:
        self.per_minute, self.path = per_minute, path

    def take(self) -> float:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            f.seek(0)
            now = time.time()
            try:
                stamps = [t for t in json.loads(f.read() or "[]") if t > now - 60]
            except (ValueError, TypeError):
                stamps = []  # a torn file: forget the window rather than stop sending
            if len(stamps) >= self.per_minute:
                return max(1.0, min(stamps) + 60 - now)
            stamps.append(now)
            f.seek(0)
            f.truncate()
            f.write(json.dumps(stamps))
            return 0.0


def ceiling_for(per_minute: int, broker_url: str, key: str,
                folder: Path) -> Ceiling | FileCeiling | None:
    """A Ceiling in Redis on a Redis broker (every worker shares it), else in a file under
    ``folder`` (the processes of this machine share it); None when ``per_minute`` is 0."""
    if per_minute <= 0:
        return None
    if broker_url.startswith(("redis://", "rediss://")):
        return Ceiling(per_minute, broker_url, key)
    return FileCeiling(per_minute, folder / f"{key.replace(':', '-')}.json")
