"""Per-client rate limits (the `limits` library): Redis when the broker is Redis, else memory."""

from __future__ import annotations

import ipaddress
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
    key = client_key(client)
    return all(limiter.hit(item, scope, key) for item in items)


def client_key(client: str) -> str:
    """Whom a limit counts: an IPv4 address, or an IPv6 client's /64.

    One IPv6 subscriber line is a /64 (or more): counted by address, it could take a new
    one for every request and never meet the limit.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
