"""Per-client rate limits (the `limits` library): Redis when the broker is Redis, else memory."""

from __future__ import annotations

from functools import lru_cache

from limits import RateLimitItem, parse_many, storage, strategies

from newsletter.config import get_settings


@lru_cache(maxsize=4)
def _limiter(storage_url: str) -> strategies.FixedWindowRateLimiter:
    return strategies.FixedWindowRateLimiter(storage.storage_from_string(storage_url))


@lru_cache(maxsize=16)
def _items(spec: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(spec)) if spec else ()


def allow(scope: str, client: str, spec: str | None = None) -> bool:
    """Count one hit for ``client`` in ``scope``; False once any limit in ``spec`` is spent."""
    settings = get_settings()
    items = _items(settings.subscribe_rate_limit if spec is None else spec)
    if not items:
        return True
    # Shared across web processes through Redis, so N replicas do not allow N times more.
    url = settings.broker if settings.broker.startswith(("redis://", "rediss://")) else "memory://"
    limiter = _limiter(url)
    return all(limiter.hit(item, scope, client) for item in items)
