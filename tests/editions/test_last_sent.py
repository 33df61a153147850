"""editions.reports.last_sent: the report of the latest edition that made deliveries (the
console's deliverability page shows its SMTP outcomes); dry runs and empty editions are
passed over. On each backend."""

from __future__ import annotations

import pytest

from newsletter import db
from newsletter.editions import reports
from newsletter.models import Delivery, Edition, Reader

pytestmark = pytest.mark.usefixtures("fresh")


def test_the_latest_edition_with_deliveries_and_its_outcomes() -> None:
    with db.session_scope() as session:
        assert reports.last_sent(session) is None
        reader = Reader(email="r@example.org", status="active")
        other = Reader(email="s@example.org", status="active")
        sent = Edition(frequency="weekly", status="done")
        session.add_all([reader, other, sent])
        session.flush()
        session.add_all([
            Delivery(edition_id=sent.id, reader_id=reader.id, status="sent",
                     message_id="<1@x>", content_key="k"),
            Delivery(edition_id=sent.id, reader_id=other.id, status="failed",
                     failure="permanent", last_error="550 5.1.1 <s@example.org> unknown",
                     message_id="<2@x>", content_key="k", reclaims=1)])
        session.add_all([Edition(frequency="daily", status="done", dry_run=True),
                         Edition(frequency="daily", status="done")])  # nothing to send
        sent_id = sent.id
    with db.session_scope() as session:
        report = reports.last_sent(session)
        assert report["id"] == sent_id
        counts = report["counts"]
        assert (counts["planned"], counts["sent"], counts["failed_permanent"]) == (2, 1, 1)
        assert counts["reclaimed"] == 1
        assert report["failures"] == [{"reason": "550 5.1.1 <<address>> unknown", "count": 1}]
