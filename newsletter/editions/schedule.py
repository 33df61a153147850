"""When scheduled editions are due, and the tick that requests them.

The schedule is a pure function of the clock and the settings: for each digest frequency,
the latest send instant at or before ``now`` (in the site's time zone) and the period it
opens. Beat runs :func:`tick` every minute; a tick requests the edition of the latest
period unless a scheduled edition was already requested at or after that instant.

So a period is sent once however many ticks, beats or retries see it (the unique
``(kind, frequency, period_key)`` constraint settles concurrent ticks), and after downtime
only the latest missed period is sent — once. Its digest carries everything since each
reader's last one (``digests.lookback_floor`` reaches back to the previous edition).

Readers live in many zones: a period is due when its send hour comes in the earliest zone
among the site's and the active readers'; its edition is planned then, once, and each
reader's delivery waits for the send hour in their own zone (newsletter.editions.waves).

A brand-new install (no scheduled edition of a frequency yet) sends the period just past
only if its instant is within ``schedule_grace_hours``: starting the service on a Thursday
must not send "Monday's" weekly edition, but starting it ten minutes late on Monday should.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter import zones
from newsletter.config import Settings, get_settings
from newsletter.editions import requests as editions
from newsletter.editions import waves
from newsletter.editions.frequencies import LOOKBACK
from newsletter.editions.selection import MAX_CATCH_UP
from newsletter.models import Article, Edition, Reader, utcnow

log = logging.getLogger(__name__)

SOURCE = waves.SOURCE


@dataclass(frozen=True)
class Due:
    """A scheduled send: its frequency, instant (aware UTC) and period key."""

    frequency: str
    at: datetime
    period: str


def latest_due(frequency: str, now: datetime, *, timezone: str = "UTC",
               daily_send_hour: int = 6, weekly_send_weekday: int = 0,
               reader_zones: Iterable[str] = ()) -> Due:
    """The latest send instant of ``frequency`` at or before ``now``, and its period.

    Daily editions go at ``daily_send_hour`` local time and their period is the local date;
    weekly ones at the same hour on ``weekly_send_weekday`` (0 = Monday) and their period is
    the ISO week of that local date. With ``reader_zones`` beside the site's
    ``timezone``, a period is due when its send hour comes in the earliest of them (the
    edition is planned then; each reader's delivery waits for their own hour, waves.py).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if frequency not in editions.DIGEST_FREQUENCIES:
        raise ValueError(f"no schedule for frequency {frequency!r}")
    tzs = [ZoneInfo(z) for z in sorted({timezone, *reader_zones})]
    # The latest day any zone has reached; its instant is the earliest zone's send hour.
    day = max(_latest_day(frequency, now, tz, daily_send_hour, weekly_send_weekday)
              for tz in tzs)
    at = min(waves.send_instant(day, daily_send_hour, tz) for tz in tzs)
    return Due(frequency, at, editions.period_key(frequency, datetime.combine(
        day, time(daily_send_hour))))


def _latest_day(frequency: str, now: datetime, tz: ZoneInfo, hour: int, weekday: int) -> date:
    """The latest local send day in ``tz`` whose send hour is at or before ``now``."""
    day = now.astimezone(tz).date()
    step = timedelta(days=1)
    if frequency == "weekly":
        day -= timedelta(days=(day.weekday() - weekday) % 7)
        step = timedelta(days=7)
    if waves.send_instant(day, hour, tz) > now:
        day -= step
    return day


def zones_in_use(session: Session, frequency: str) -> set[str]:
    """The time zones active readers of ``frequency`` named (the site's stands for NULL).

    A DISTINCT over the readers' zone each tick: a few dozen names however many readers.
    """
    return {z for z in session.scalars(
        select(Reader.timezone).distinct()
        .where(Reader.status == "active", Reader.frequency == frequency)) if z and zones.known(z)}


def next_due(frequency: str, now: datetime, settings: Settings | None = None,
             reader_zones: Iterable[str] = ()) -> Due:
    """The first send instant of ``frequency`` after ``now`` under the site's settings."""
    settings = settings or get_settings()
    step = timedelta(days=7 if frequency == "weekly" else 1)
    for reach in (step, step + timedelta(hours=2)):  # a 25-hour day (DST) needs the extra
        due = latest_due(frequency, now + reach, timezone=settings.timezone,
                         daily_send_hour=settings.daily_send_hour,
                         weekly_send_weekday=settings.weekly_send_weekday,
                         reader_zones=reader_zones)
        if due.at > now:
            return due
    raise AssertionError("unreachable: a send instant falls within every step")


def upcoming(session: Session, now: datetime | None = None,
             settings: Settings | None = None) -> list[dict[str, Any]]:
    """What the next scheduled edition of each frequency will do: when it goes, its period,
    the active readers on that frequency, and the articles published since that frequency's
    last edition (what it would carry, before each reader's own history and topics)."""
    now = now or utcnow()
    readers = dict(session.execute(
        select(Reader.frequency, func.count()).where(Reader.status == "active")
        .group_by(Reader.frequency)).all())
    out = []
    for frequency in editions.DIGEST_FREQUENCIES:
        due = next_due(frequency, now, settings, zones_in_use(session, frequency))
        last = session.scalar(select(func.max(Edition.cutoff_at)).where(
            Edition.kind == "digest", Edition.frequency == frequency, Edition.dry_run.is_(False),
            Edition.status.in_(("sending", "done", "paused"))))
        since = max(last or now - LOOKBACK[frequency], now - MAX_CATCH_UP)
        out.append({
            "frequency": frequency, "at": due.at, "period": due.period,
            "readers": readers.get(frequency, 0),
            "articles": session.scalar(select(func.count()).select_from(Article).where(
                Article.status == "published", Article.published_at > since)) or 0,
        })
    return out


def due_now(now: datetime, settings: Settings | None = None,
            session: Session | None = None) -> list[Due]:
    """The latest due instant of every digest frequency under the site's settings (and, given
    a session, the zones its readers live in)."""
    settings = settings or get_settings()
    return [latest_due(f, now, timezone=settings.timezone,
                       daily_send_hour=settings.daily_send_hour,
                       weekly_send_weekday=settings.weekly_send_weekday,
                       reader_zones=zones_in_use(session, f) if session is not None else ())
            for f in editions.DIGEST_FREQUENCIES]


def tick(session: Session, now: datetime | None = None,
         settings: Settings | None = None) -> list[Edition]:
    """Request each scheduled edition that is due and not yet requested; returns them.

    Idempotent: a second tick for the same period, or a concurrent one, requests nothing
    new (it may return the existing edition when it raced the first).
    """
    settings = settings or get_settings()
    now = now or utcnow()
    grace = timedelta(hours=settings.schedule_grace_hours)
    requested = []
    for due in due_now(now, settings, session):
        last = session.scalar(
            select(func.max(Edition.requested_at))
            .where(Edition.kind == "digest", Edition.frequency == due.frequency,
                   Edition.source == SOURCE)
        )
        if last is not None and last >= due.at:
            continue  # this period (or, after a settings change, a later one) is requested
        if last is not None and session.scalar(select(Edition.id).where(
                Edition.kind == "digest", Edition.frequency == due.frequency,
                Edition.period_key == due.period)) is not None:
            # Requested when a reader further east made it due earlier, and that reader has
            # left since (their zone moved the period's instant): still the same period.
            continue
        late = now - due.at
        if last is None and late > grace:
            log.info("schedule: first %s edition waits for the next period (the last one "
                     "was due %s ago)", due.frequency, late)
            continue
        if late > timedelta(minutes=5):
            log.warning("schedule: catching up the %s edition of %s, due %s ago",
                        due.frequency, due.period, late)
        requested.append(editions.request(session, due.frequency, source=SOURCE,
                                          period=due.period, now=now))
    return requested
