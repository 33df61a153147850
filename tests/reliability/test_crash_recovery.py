"""Crash recovery with the operators' defaults: the 40-minute lease, the 10 s relay
interval, the 5 s heartbeat and 30 s holder timeout, nothing shortened.

A SIGKILLed sending process is taken for gone when its heartbeat stops; a broker that comes
back empty has lost its epoch mark. Both cost seconds. Copies are counted by Message-ID at
the SMTP server: the only second copy a kill may cost is the message in flight (RFC 1047's
window), and a SIGTERM or a Redis restart costs none.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from sqlalchemy import func, select

from newsletter import db, processes
from newsletter.config import get_settings
from newsletter.editions import reconcile
from newsletter.models import Delivery
from tests.reliability.conftest import BATCH, copies_by_reader

READERS = [f"reader{i:02d}@example.com" for i in range(3 * BATCH)]
WITHIN_S = 60  # the promise: every reader has the edition this soon after the fault


def _defaults_in_force() -> None:
    settings = get_settings()
    assert (settings.delivery_lease_s, settings.relay_interval_s, settings.holder_heartbeat_s,
            settings.holder_timeout_s) == (2400.0, 10.0, 5.0, 30.0)


def _last_sent_at(edition_id: int) -> float:
    with db.session_scope() as session:
        return session.scalar(select(func.max(Delivery.sent_at))
                              .where(Delivery.edition_id == edition_id)).timestamp()


def _beat(rig, edition_id: int) -> dict:
    # Beat's relay at its default interval; the lease as operators get it.
    return rig.settle(edition_id, lease=None, every=get_settings().relay_interval_s,
                      timeout=WITHIN_S + 30)


@pytest.mark.parametrize(("point", "stage", "nth", "extra"), [
    # blocked at RCPT of the second batch's first message: nothing of it accepted yet
    ("before SMTP", "rcpt", BATCH + 1, 0),
    # the relay took message BATCH+1 (DATA received) but its 250 never came back
    ("inside DATA", "data", BATCH + 1, 1),
    # BATCH+1 accepted and journaled; BATCH+2's DATA taken, its 250 unread (pipelined with
    # the next envelope, which the relay holds): only that one is sent twice
    ("mid-batch", "rcpt", BATCH + 3, 1),
])
def test_sigkill_with_default_timings_costs_seconds_and_one_copy_at_most(
        redis_rig, point, stage, nth, extra) -> None:
    rig = redis_rig
    _defaults_in_force()
    rig.seed(READERS)
    rig.script.hold(stage, nth)
    worker = rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    rig.kill_worker(worker)  # one sending process (concurrency 1), killed with its pool
    killed_at = time.time()
    rig.script.release.set()

    rig.start_worker(concurrency=1)
    report = _beat(rig, edition_id)
    took = _last_sent_at(edition_id) - killed_at

    copies = copies_by_reader(rig.script, READERS)  # one Message-ID per reader
    twice = sorted(e for e, n in copies.items() if n > 1)
    assert report["counts"]["sent"] == len(READERS)
    assert all(n in (1, 2) for n in copies.values()), copies
    assert len(twice) == extra <= 1, (point, copies)
    assert took < WITHIN_S, f"{point}: last delivery {took:.1f} s after the kill"
    print(f"\n[{rig.name}] SIGKILL {point}: last delivery {took:.1f} s after the kill, "
          f"{len(twice)} second copy (same Message-ID)")


def test_redis_restarted_empty_with_default_timings_loses_no_reader(redis_rig) -> None:
    rig = redis_rig
    _defaults_in_force()
    rig.seed(READERS)
    with db.session_scope() as session:
        reconcile.tick(session)  # beat has been running: the broker carries its mark
    rig.script.hold("rcpt", BATCH + 2)  # mid second batch; the third is in Redis
    rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    with db.session_scope() as session:
        # A healthy broker with a backlog: nothing enqueued twice.
        assert session.scalar(select(func.count()).where(
            Delivery.edition_id == edition_id, Delivery.status == "queued")) > 0
        assert reconcile.tick(session)["broker_lost"] == 0
    rig.redis.stop()  # no persistence: the queued tasks and the mark are gone
    rig.redis.start()
    answering_at = time.time()
    rig.script.release.set()

    report = _beat(rig, edition_id)
    took = _last_sent_at(edition_id) - answering_at
    assert copies_by_reader(rig.script, READERS) == {e: 1 for e in READERS}
    assert report["counts"]["sent"] == len(READERS)
    assert took < WITHIN_S, f"last delivery {took:.1f} s after Redis answered"
    print(f"\n[{rig.name}] Redis restarted empty: last delivery {took:.1f} s after it answered")


def test_sigterm_mid_batch_loses_and_doubles_nothing(redis_rig) -> None:
    rig = redis_rig
    _defaults_in_force()
    rig.seed(READERS)
    rig.script.hold("rcpt", BATCH + 3)
    worker = rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    # A deploy: SIGTERM, and the relay answers again while the worker shuts down warm.
    stopping = threading.Thread(target=processes.stop, args=(worker,), kwargs={"timeout": 60})
    stopping.start()
    time.sleep(1)
    assert worker.poll() is None, "warm shutdown waits for the batch in progress"
    rig.script.release.set()
    stopping.join()
    stopped_at = time.time()
    with db.session_scope() as session:
        left = session.scalar(select(func.count()).where(
            Delivery.edition_id == edition_id, Delivery.status == "sending"))
    assert left == 0, "the batch in progress finished and recorded before the exit"

    rig.start_worker(concurrency=1)
    report = _beat(rig, edition_id)
    assert copies_by_reader(rig.script, READERS) == {e: 1 for e in READERS}
    assert report["counts"]["sent"] == len(READERS)
    print(f"\n[{rig.name}] SIGTERM: last delivery "
          f"{_last_sent_at(edition_id) - stopped_at:.1f} s after the old worker exited")


def test_worker_frozen_past_the_timeout_sends_nothing_after_it_thaws(redis_rig) -> None:
    """A process stopped (SIGSTOP: a VM paused, a swap storm) past holder_timeout_s is
    taken for dead and its deliveries go to another worker; once it runs again it must not
    send what it held, or every one of them would go out twice."""
    rig = redis_rig
    _defaults_in_force()
    rig.seed(READERS)
    rig.script.hold("rcpt", BATCH + 3)
    frozen = rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    os.killpg(frozen.pid, signal.SIGSTOP)
    try:
        rig.start_worker(concurrency=1)
        report = _beat(rig, edition_id)
        assert report["counts"]["sent"] == len(READERS)
    finally:
        rig.script.release.set()  # its RCPT is answered: the frozen batch would go on
        os.killpg(frozen.pid, signal.SIGCONT)
    time.sleep(3)  # it wakes, finds it was taken for dead, and stops
    copies = copies_by_reader(rig.script, READERS)
    twice = sorted(e for e, n in copies.items() if n > 1)
    # Only the message in flight when it froze (BATCH+2: DATA taken, its 250 unread).
    assert len(twice) <= 1, copies
    assert "may have been taken for dead" in rig.logs()
