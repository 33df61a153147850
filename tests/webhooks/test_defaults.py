"""The settings operators get (the other tests shorten the retries and allow loopback):
private targets refused, the backoff's schedule, and a day of retries before a dead letter."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from newsletter.config import get_settings, reload_settings
from newsletter.errors import WebhookError
from newsletter.webhooks import delivery, endpoints
from tests.webhooks.conftest import TEST_ENV


@pytest.fixture
def defaults():
    saved = {k: os.environ.pop(k) for k in TEST_ENV if k in os.environ}
    reload_settings()
    yield get_settings()
    os.environ.update(saved)
    reload_settings()


def test_private_targets_are_refused_by_default(defaults):
    assert defaults.webhook_allow_private is False and defaults.webhook_allowed_hosts == []
    for url in ("http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/"):
        with pytest.raises(WebhookError, match="NEWSLETTER_WEBHOOK_ALLOW_PRIVATE"):
            endpoints.check_url(url)


def test_the_default_backoff_grows_to_the_hour_with_jitter(defaults):
    assert defaults.webhook_timeout_s == 5.0
    waits = {attempt: {delivery.backoff(attempt) for _ in range(50)} for attempt in (1, 2, 8, 40)}
    assert all(timedelta(seconds=15) <= w <= timedelta(seconds=30) for w in waits[1])
    assert all(timedelta(seconds=30) <= w <= timedelta(seconds=60) for w in waits[2])
    for attempt in (8, 40):  # capped at WEBHOOK_RETRY_MAX_S
        assert all(timedelta(minutes=30) <= w <= timedelta(hours=1) for w in waits[attempt])
    assert len(waits[1]) > 1  # jittered: receivers that failed together do not come back together


def test_by_default_a_day_of_retries_comes_before_the_attempts_run_out(defaults):
    # The shortest schedule the jitter allows (half of each ceiling) for every retry the
    # attempts limit permits still outlasts WEBHOOK_MAX_AGE_HOURS.
    shortest = sum((min(defaults.webhook_retry_max_s, defaults.webhook_retry_base_s * 2 ** (n - 1))
                    / 2 for n in range(1, defaults.webhook_max_attempts)), 0.0)
    assert defaults.webhook_max_age_hours == 24
    assert shortest > defaults.webhook_max_age_hours * 3600
