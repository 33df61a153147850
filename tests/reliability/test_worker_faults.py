"""A worker SIGKILLed mid-batch, at three points; the reconciler finishes the edition.

Counting by Message-ID at the SMTP server: a reader gets exactly one copy, except the
messages the relay accepted (250 after DATA) that the dead worker had not yet recorded:
those go out again after the lease, with the SAME Message-ID. Their number is exact here
(one worker, one batch at a time) and is what the README's guarantee bounds.
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
    # two messages of the second batch accepted, the worker dies at the third
    ("mid-batch", "rcpt", BATCH + 3, 2),
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
    # The second copies are exactly the accepted-but-unrecorded ones of the killed batch.
    assert report["counts"]["sent"] == len(READERS)
    assert report["counts"]["reclaimed"] >= duplicates
    print(f"\n[{rig.name}] SIGKILL {point}: {len(READERS)} readers, "
          f"{len(twice)} second copies (same Message-ID), reclaimed {report['counts']['reclaimed']}")
