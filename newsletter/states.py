"""The states an edition and a delivery move through, named once.

A floor module beside models.py rather than inside it: the names are shared by SQL
(``Delivery.status.in_(OPEN)``), reports, the CLI and the templates, and a module that only
names states needs no SQLAlchemy. The columns stay strings: a ``StrEnum`` member is its
string, so it compares equal to what the database holds and stores as it (no migration).
The sets are tuples, not sets: SQL's IN takes them as they are, in the same order each time.
"""

from __future__ import annotations

from enum import StrEnum


class EditionStatus(StrEnum):
    # An alert window still collecting articles until its cutoff (see editions/alerts.py).
    OPEN = "open"
    PLANNING = "planning"
    SENDING = "sending"
    DONE = "done"
    # A systemic failure (the relay refusing everyone) stopped it; resume after the fix.
    PAUSED = "paused"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    # queued → sending → sent | failed | suppressed; a temporary failure goes to retry and
    # back to queued when its next attempt is due.
    QUEUED = "queued"
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


# Editions that need nothing more from the engine (the CLI's wait loop stops on them).
FINISHED = (EditionStatus.DONE, EditionStatus.PAUSED, EditionStatus.FAILED)
# Editions whose deliveries a worker may be sending: the reconciler takes back stale claims
# and re-enqueues lost tasks only for these.
SENDABLE = (EditionStatus.PLANNING, EditionStatus.SENDING)

# Deliveries not finished yet: a worker may still send them (or is sending them now). An
# edition with any of these is not done, and a report counts them as still to go.
OPEN = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.RETRY)
# Deliveries not sent and still changeable: no worker holds them, so their content can be
# changed (an article withdrawn) or they can be suppressed (a reader unsubscribed, erased or
# bounced) without racing a send. "sending" is left out: a worker holds that row and may be
# talking to the relay; what it sends is settled when it records the outcome.
UNSENT = (DeliveryStatus.QUEUED, DeliveryStatus.RETRY)


class EditorRole(StrEnum):
    """What a console account may do. An admin may do all an editor may, and more."""

    # Articles, topics, previews, test sends, editions, stats.
    EDITOR = "editor"
    # Also readers' data (export, erase), imports, the suppression list, editors and
    # tokens, feeds.
    ADMIN = "admin"

    def allows(self, needed: EditorRole) -> bool:
        return needed is EditorRole.EDITOR or self is EditorRole.ADMIN


class ImportStatus(StrEnum):
    """A console CSV import: waiting for a worker, being read, finished or given up."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
