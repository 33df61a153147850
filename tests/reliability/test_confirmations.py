"""A burst of sign-ups is one send_confirmations task: each reader still gets exactly one
confirmation, whatever the relay does to the others."""

from __future__ import annotations

import time

from newsletter import db
from newsletter.readers import subscriptions
from tests.conftest import offer_topics


def test_a_burst_retries_the_deferred_and_confirms_each_reader_once(rig) -> None:
    with db.session_scope() as session:
        offer_topics(session, "Syria")
    rig.start_worker()
    fine = ["fine-a@example.com", "fine-b@example.com"]
    with db.session_scope() as session:  # committed together: one outbox batch, one task
        for email in [fine[0], "defer-a@example.com", "bounce-a@example.com", fine[1]]:
            subscriptions.subscribe(session, email, ["syria"], "weekly", consent_given=True)

    def wait(done, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what}\n{rig.logs()}"
            time.sleep(0.05)

    script = rig.script
    wait(lambda: all(script.copies().get(e) for e in fine)
         and script.tries[("data", "defer-a@example.com")] >= 1, "the first pass")
    script.defer_ok = True  # the relay takes it now: the task's retry must bring it
    wait(lambda: script.copies().get("defer-a@example.com"), "the deferred one")
    time.sleep(1)  # nothing more may come
    copies = script.copies()
    assert {e: len(copies.get(e, [])) for e in [*fine, "defer-a@example.com"]} == {
        "fine-a@example.com": 1, "fine-b@example.com": 1, "defer-a@example.com": 1}
    assert "bounce-a@example.com" not in copies
