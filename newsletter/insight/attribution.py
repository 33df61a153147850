"""Who an edition lost, and why: the readers who left through its links, by the reason they
gave, and those its messages lost by a hard bounce or a complaint (counted apart: they did
not choose to leave).

Read from the consent ledger, whose withdrawals from an edition's links carry its id: the
unsubscribe page (with the reasons it offers, never required), the RFC 8058 one-click
(a mailbox provider's button: it carries no reason), and the bounce and complaint handling.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import ConsentEvent
from newsletter.readers import reasons

NO_REASON = "none"
ONE_CLICK = "one-click"
# What the figures call each reason, in the order they are shown.
LABELS = {**reasons.OFFERED, reasons.OTHER: "Other (in their own words)",
          NO_REASON: "Gave no reason", ONE_CLICK: "One-click (no reason)"}
LOST_BY = ("bounce", "complaint")  # consent methods of a reader we unsubscribed


def for_edition(session: Session, edition_id: int) -> dict[str, Any]:
    """The edition's unsubscribes per reason (a reader may give several), and the readers
    its bounces and complaints unsubscribed."""
    per_reason: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    unsubscribed = 0
    for method, details in session.execute(
            select(ConsentEvent.method, ConsentEvent.details)
            .where(ConsentEvent.edition_id == edition_id, ConsentEvent.action == "withdrawn")):
        if method in LOST_BY:
            lost[method] += 1
            continue
        unsubscribed += 1
        if method == ONE_CLICK:
            per_reason[ONE_CLICK] += 1
        else:
            per_reason.update(reasons.codes((details or {}).get("reason")) or [NO_REASON])
    return {
        "unsubscribed": unsubscribed,
        "reasons": [{"reason": code, "label": label, "readers": per_reason[code]}
                    for code, label in LABELS.items() if per_reason[code]],
        "bounced": lost["bounce"],
        "complained": lost["complaint"],
    }
