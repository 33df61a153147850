"""An editor's double submit: two concurrent POST /api/editions with one Idempotency-Key,
each from its own client, with a real worker — one edition, and counting by Message-ID at
the SMTP server, every reader gets exactly one copy. (The sequential double click is in
tests/editions/test_requests.py; this is the race.)"""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from newsletter import db
from newsletter.models import Edition
from tests.reliability.conftest import AUTH, BATCH, copies_by_reader

READERS = [f"reader{i:02d}@example.com" for i in range(2 * BATCH + 1)]


def test_two_concurrent_submits_with_one_key_send_one_edition(rig) -> None:
    rig.seed(READERS)
    rig.start_worker(concurrency=2)
    clients = [rig.client(), rig.client()]  # two browsers tabs: two apps, two connections
    start = threading.Barrier(len(clients))
    answers: list = [None] * len(clients)

    def submit(i: int) -> None:
        start.wait()
        answers[i] = clients[i].post("/api/editions", json={"frequency": "daily"},
                                     headers=AUTH | {"Idempotency-Key": "send-friday-digest"})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    [edition_id] = {a.json()["id"] for a in answers}
    report = rig.settle(edition_id)

    # A third, late click changes nothing either.
    again = clients[0].post("/api/editions", json={"frequency": "daily"},
                            headers=AUTH | {"Idempotency-Key": "send-friday-digest"})
    assert again.json()["id"] == edition_id
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 1
    assert report["counts"]["sent"] == len(READERS), report
    assert copies_by_reader(rig.script, READERS) == {e: 1 for e in READERS}
