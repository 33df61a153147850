"""The confirmation ceiling operators get: 600 a minute (NEWSLETTER_CONFIRMATION_RATE_PER_MINUTE),
which a burst of sign-ups far larger than a form takes in a few seconds does not meet."""

from __future__ import annotations

import time

from newsletter import db
from newsletter.config import Settings, get_settings
from newsletter.readers import subscriptions
from tests.conftest import offer_topics


def test_the_default_ceiling_is_600_a_minute_and_a_burst_goes_at_once(fresh) -> None:
    assert Settings().confirmation_rate_per_minute == 600
    assert get_settings().confirmation_rate_per_minute == 600  # what this worker runs with
    emails = {f"reader{n}@example.com" for n in range(40)}
    with db.session_scope() as session:
        offer_topics(session, "Syria")
        session.flush()
        for email in sorted(emails):
            subscriptions.subscribe(session, email, ["syria"], "weekly", consent_given=True)
    deadline = time.monotonic() + 30
    while not {m["To"] for m in fresh.smtp.messages()} >= emails:
        assert time.monotonic() < deadline, "a burst under the default ceiling was held"
        time.sleep(0.05)
