"""The embedded (filesystem) broker: a consumer polling the folder never sees a half-written
message.

kombu's own filesystem transport writes message files in place; a consumer could move one
away while it was still being written and die on the JSON ("Unrecoverable error:
JSONDecodeError" — it stopped a worker in our CI). workers/filesystem_transport.py writes
under another name and renames. Large messages widen the window so the race shows every
time with kombu's transport (the first case, kept to prove the test can fail).
"""

from __future__ import annotations

import threading
import time

import pytest
from kombu import Connection, Exchange, Queue

N = 60
PAD = "x" * 1_000_000


def drain(transport: str, folder: str) -> tuple[int, list[str]]:
    opts = {"data_folder_in": folder, "data_folder_out": folder, "store_processed": False,
            "polling_interval": 0.0}
    queue = Queue("newsletter", Exchange("newsletter"), "newsletter")

    def produce() -> None:
        with Connection("filesystem://", transport=transport, transport_options=opts) as conn:
            producer = conn.Producer()
            for i in range(N):
                producer.publish({"i": i, "pad": PAD}, exchange=queue.exchange,
                                 routing_key="newsletter", declare=[queue])

    got, errors = 0, []
    with Connection("filesystem://", transport=transport, transport_options=opts) as conn:
        channel = conn.channel()
        queue(channel).declare()
        writer = threading.Thread(target=produce)
        writer.start()
        deadline = time.monotonic() + 60
        while got + len(errors) < N and time.monotonic() < deadline:
            try:
                message = channel.basic_get("newsletter")
            except ValueError as exc:  # json.JSONDecodeError: a half-written file
                errors.append(type(exc).__name__)
                continue
            if message is not None:
                assert message.decode()["pad"] == PAD
                message.ack()
                got += 1
        writer.join()
    return got, errors


def test_our_transport_never_hands_out_a_half_written_message(tmp_path) -> None:
    assert drain("workers.filesystem_transport:Transport", str(tmp_path)) == (N, [])


def test_kombus_own_transport_does_which_is_why_we_replace_it(tmp_path) -> None:
    got, errors = drain("filesystem", str(tmp_path))
    if not errors:
        pytest.skip("the race did not show this time (it needs the consumer to win it)")
    assert got < N
