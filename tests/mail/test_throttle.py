"""The global send rate: a token bucket in-process and in Redis (shared across processes)."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from newsletter.mail import mailer, throttle
from tests.conftest import REDIS_URL, REQUIRE_SERVERS


def test_local_bucket_spaces_messages_at_the_rate() -> None:
    bucket = throttle.LocalBucket(rate=50, burst=1)
    started = time.monotonic()
    for _ in range(26):
        bucket.acquire()
    elapsed = time.monotonic() - started
    # 25 messages after the first must take 0.5 s; generous upper bound for a busy machine.
    assert 0.45 <= elapsed < 2.5


def test_unlimited_and_invalid_rates() -> None:
    assert throttle.limiter_for(0, "filesystem://") is None
    assert isinstance(throttle.limiter_for(5, "filesystem://"), throttle.LocalBucket)
    with pytest.raises(ValueError):
        throttle.LocalBucket(rate=0)


def test_transport_waits_for_the_bucket(smtp) -> None:
    sink, url = smtp
    sink.clear()
    transport = mailer.SmtpTransport(mailer.SmtpConfig.from_url(url), throttle.LocalBucket(20, burst=1))
    message = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nhi\r\n"
    started = time.monotonic()
    with transport:
        for _ in range(6):
            mailer.send_one(transport, "a@example.org", "b@example.org", message)
    assert time.monotonic() - started >= 0.24  # 5 intervals of 50 ms
    assert len(sink.wait_for(6)) == 6


def _take(url: str, key: str, rate: float, n: int, out) -> None:
    bucket = throttle.RedisBucket(url, rate, key=key)
    for _ in range(n):
        bucket.acquire()
    out.put(time.monotonic())


@pytest.mark.skipif(not REDIS_URL and not REQUIRE_SERVERS,
                    reason="needs Redis: set NEWSLETTER_TEST_REDIS_URL")
def test_redis_bucket_is_shared_by_two_processes() -> None:
    key = f"test:rate:{os.getpid()}:{time.monotonic_ns()}"
    rate, each = 40.0, 20
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(REDIS_URL, key, rate, each, out)) for _ in range(2)]
    started = time.monotonic()
    for p in procs:
        p.start()
    finished = max(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    elapsed = finished - started
    # 40 messages at 40/s across both processes: ~1 s (minus the 4-message burst). Two
    # separate buckets would let them through in half that.
    assert elapsed >= (2 * each - 4) / rate * 0.9
    assert elapsed < 10
