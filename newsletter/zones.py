"""Readers' time zones: which IANA names we accept, and the list a reader picks from.

A floor module (readers, editions and web all need it; none of them owns it). A reader's
zone is stored as its IANA name; NULL means "the site's TIMEZONE", so readers who never
told us follow the operator's setting if it changes.
"""

from __future__ import annotations

from functools import cache
from itertools import groupby
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# An IANA name is at most ~32 characters ("America/Argentina/ComodRivadavia"); the column
# holds 64 so a longer future name still fits, and anything longer is not a zone.
MAX_LENGTH = 64


def known(name: str | None) -> bool:
    """Whether ``name`` is a time zone zoneinfo can load (an IANA name such as Asia/Amman)."""
    if not name or len(name) > MAX_LENGTH or name != name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a path-like or malformed key
        return False
    return True


def zone_or_none(name: str | None) -> str | None:
    """``name`` if it is a known zone, else None (the site's zone)."""
    name = (name or "").strip()
    return name if known(name) else None


@cache
def choices() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every canonical zone, grouped by region ("Africa", "America", …) for a <select>.

    Region/City names only (plus UTC): the legacy aliases (US/Pacific, Etc/GMT+8) are valid
    and kept if a reader has one, but offering them would only lengthen the list.
    """
    names = sorted(n for n in available_timezones()
                   if "/" in n and not n.startswith(("Etc/", "SystemV/", "US/", "posix/",
                                                     "right/")))
    grouped = [(region, tuple(zones)) for region, zones in
               groupby(names, key=lambda n: n.split("/", 1)[0]) if region[0].isupper()]
    return (("UTC", ("UTC",)), *grouped)


def choices_with(current: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """:func:`choices`, with ``current`` first if the list leaves it out (an alias an import
    gave): a reader saving the page must keep their zone, not get the first in the list."""
    groups = choices()
    if any(current in names for _, names in groups):
        return groups
    return (("Your current zone", (current,)), *groups)
