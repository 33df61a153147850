"""How often readers hear from us, and how far back each frequency looks for stories."""

from __future__ import annotations

from datetime import timedelta

DIGEST_FREQUENCIES = ("daily", "weekly")
# "immediate": an alert skips a story first published more than this before its window
# (a feed backfill is not news), however recently it reached us.
LOOKBACK = {"daily": timedelta(days=1), "weekly": timedelta(days=7),
            "immediate": timedelta(hours=1)}
