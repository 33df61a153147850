"""A worker SIGKILLed mid-batch, at three points; the reconciler finishes the edition.

Counting by Message-ID at the SMTP server: a reader gets exactly one copy, except the
message in flight when the worker died (its DATA taken, its 250 not yet read: RFC 1047's
window), which goes out again after the lease with the SAME Message-ID. The messages
accepted before it are in the process's journal (a file here with the embedded broker, a
Redis list with Redis), which the reconciler reads before taking the deliveries back. The
lease is shortened here to test that fallback; test_crash_recovery runs the defaults.
"""

from __future__ import annotations

import pytest

from tests.reliability.conftest import BATCH, copies_by_reader

READERS = [f"reader{i:02d}@example.com" for i in range(3 * BATCH)]
LEASE = 3.0  # a test batch takes well under a second; production's lease is 40 min


@pytest.mark.parametrize(("point", "stage", "nth", "duplicates"), [
    # blocked at RCPT of the second batch's first message: nothing of it accepted yet
    ("before SMTP", "rcpt", BATCH + 1, 0),
    # the relay took message BATCH+1 (DATA received) but its 250 never came back
    ("inside DATA", "data", BATCH + 1, 1),
    # two messages of the second batch accepted (the first journaled, the second's 250
    # unread: it came pipelined with the envelope the relay holds), the worker dies
    ("mid-batch", "rcpt", BATCH + 3, 1),
])
def test_sigkill_mid_batch_every_reader_gets_one_message_id(rig, point, stage, nth,
                                                            duplicates) -> None:
    rig.seed(READERS)
    rig.script.hold(stage, nth)
    worker = rig.start_worker(concurrency=1)
    edition_id = rig.request_edition()
    assert rig.script.held.wait(60), rig.logs()
    rig.kill_worker(worker)
    rig.script.release.set()

    rig.start_worker(concurrency=1)
    report = rig.settle(edition_id, lease=LEASE)

    copies = copies_by_reader(rig.script, READERS)
    twice = sorted(e for e, n in copies.items() if n == 2)
    assert all(n in (1, 2) for n in copies.values()), copies
    assert len(twice) == duplicates, (point, copies)
    # The second copy is exactly the one in flight in the killed batch.
    assert report["counts"]["sent"] == len(READERS)
    assert report["counts"]["reclaimed"] >= duplicates
    print(f"\n[{rig.name}] SIGKILL {point}: {len(READERS)} readers, "
          f"{len(twice)} second copies (same Message-ID), reclaimed {report['counts']['reclaimed']}")
