"""Waves: a scheduled edition reaches each reader at the send hour in the reader's zone.

One edition per period, planned once (editions/schedule.py requests it when the period's
send hour comes in the earliest zone among the site's and its readers'). Planning gives
each delivery a ``not_before``: the send hour on the period's day in its reader's zone,
worked out once per zone, not per reader. Those already due go to the queue at once; the
others are held (queued, never handed to the broker) until :func:`release_due`, run by the
reconciler's pass every RELAY_INTERVAL_S, hands each wave over when its time comes. No
Celery countdown/ETA: Redis would redeliver a task held longer than its visibility timeout.

The article cutoff is the edition's, for every wave: a reader whose wave goes 20 hours after
planning gets the stories that had reached us when the edition was planned, and the later
ones open their next digest. One cutoff keeps "planned once" (one history read, readers with
the same topics share one digest) and "never twice" as they were; a cutoff per wave would be
a plan per wave.

Editions asked for by an editor (API, console "send now", CLI) and immediate alerts have no
waves: every delivery goes at once, whatever the reader's zone.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from newsletter import zones
from newsletter.config import Settings, get_settings
from newsletter.editions import deliveries
from newsletter.models import Delivery, Edition, utcnow
from newsletter.states import OPEN, SENDABLE, DeliveryStatus

log = logging.getLogger(__name__)

# Editions the schedule requested (Edition.source); only these are sent in waves.
SOURCE = "schedule"

# Held for its wave and not yet handed to the queue: what the reconciler's other passes (a
# lost task, a lost broker) must leave alone, since it was never in the broker. A wave's
# delivery due when it was planned (its hour had come, or a catch-up after downtime) went
# to the queue with its page and was stamped queued_at then; the release stamps the others.
# (not_before IS NOT NULL, not a comparison that is NULL without a wave: NOT (… NULL) would
# leave every delivery without a wave out of the passes that negate HELD.)
HELD = and_(Delivery.status == DeliveryStatus.QUEUED, Delivery.queued_at.is_(None),
            Delivery.not_before.is_not(None))


def send_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """``hour``:00 on ``day`` in ``zone``, as aware UTC.

    An hour that a DST jump skips resolves to the instant just after the jump, an hour that
    occurs twice to its first occurrence (fold=0): one instant per day either way, so a DST
    change neither skips nor doubles a day.
    """
    # Compared in UTC: Python compares two datetimes of the same zone by wall clock, which
    # is wrong across a DST change.
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def send_day(edition: Edition, settings: Settings) -> date | None:
    """The local day a scheduled edition is for (its period's send day), else None."""
    if edition.source != SOURCE or edition.kind != "digest" or not edition.period_key:
        return None
    try:
        if edition.frequency == "daily":
            return date.fromisoformat(edition.period_key)
        year, week = edition.period_key.split("-W")
        return date.fromisocalendar(int(year), int(week), settings.weekly_send_weekday + 1)
    except ValueError:
        return None


class ReleaseTimes:
    """Each zone's ``not_before`` for one edition, worked out the first time the zone is met
    (a page of readers costs a dict lookup each). None as a zone: the site's."""

    def __init__(self, day: date, settings: Settings) -> None:
        self.day, self.hour, self.site = day, settings.daily_send_hour, settings.timezone
        self._at: dict[str | None, datetime] = {}

    def __call__(self, zone: str | None) -> datetime:
        at = self._at.get(zone)
        if at is None:
            # A stored name zoneinfo no longer knows (an old tzdata) falls back to the site's.
            name = zone if zone and zones.known(zone) else self.site
            at = self._at[zone] = send_instant(self.day, self.hour, ZoneInfo(name))
        return at


def release_times(edition: Edition, settings: Settings | None = None) -> ReleaseTimes | None:
    """The edition's per-zone release times, or None when everything goes at once."""
    settings = settings or get_settings()
    day = send_day(edition, settings)
    return ReleaseTimes(day, settings) if day is not None else None


def release_due(session: Session, now: datetime | None = None) -> int:
    """Hand every held delivery whose wave is due to the queue (once: the UPDATE stamps
    queued_at, so two passes at once release each row once); returns how many.

    A wave whose time passed while we were down goes out at the first pass back. A paused
    edition's waves wait for resume (reconcile.resume releases what is due by then).
    """
    now = now or utcnow()
    rows = session.execute(
        update(Delivery)
        .where(HELD, Delivery.not_before <= now,
               Delivery.edition_id.in_(select(Edition.id).where(Edition.status.in_(SENDABLE))))
        .values(queued_at=now)
        .returning(Delivery.id, Delivery.edition_id)
    ).all()
    deliveries.enqueue(session, rows)
    session.commit()
    if rows:
        log.info("released a wave of deliveries", extra={"count": len(rows)})
    return len(rows)


def summary(session: Session, edition_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The edition's waves for the console: per release time, how many were sent, how many
    are still to go (held or in the queue), how many went otherwise; and the next one's time.

    A delivery without a release time (an editor's edition) counts as one wave "at once".
    """
    now = now or utcnow()
    waves: dict[datetime | None, dict[str, Any]] = defaultdict(
        lambda: {"sent": 0, "due": 0, "other": 0})
    for at, status, n in session.execute(
        select(Delivery.not_before, Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.not_before, Delivery.status)
    ):
        key = "sent" if status == DeliveryStatus.SENT else "due" if status in OPEN else "other"
        waves[at][key] += n
    rows = [{"at": at, **counts, "total": sum(counts.values()),
             "waiting": at is not None and at > now}
            for at, counts in sorted(waves.items(),
                                     key=lambda kv: kv[0] or datetime.min.replace(tzinfo=UTC))]
    upcoming = [r["at"] for r in rows if r["waiting"] and r["due"]]
    return {"waves": rows, "next_at": min(upcoming) if upcoming else None}
