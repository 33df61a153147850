"""Why readers leave: the choices the unsubscribe page offers (never required).

The page posts the labels it showed, and the ledger keeps them as the reader saw them
(``details.reason``, the ticked labels and any words of their own joined by "; "). The
editor's figures read them back as these codes: a label we offer is its code, anything else
the reader wrote is ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable

from newsletter.config import N_

# Code → the label the page shows (translated) and the ledger keeps (in English). Order: as
# the page lists them.
OFFERED = {
    "too-many": N_("Too many emails"),
    "not-relevant": N_("Not relevant to me any more"),
    "never-signed-up": N_("I never signed up"),
    "elsewhere": N_("I get the news elsewhere"),
}
OTHER = "other"  # the page's "Anything else" box
SEPARATOR = "; "
_CODE_OF = {label.lower(): code for code, label in OFFERED.items()}


def codes(reason: str | None) -> list[str]:
    """The reason codes of a ledger entry's ``details.reason`` (none when it gave none)."""
    found: list[str] = []
    for part in (reason or "").split(SEPARATOR):
        part = part.strip()
        if part:
            code = _CODE_OF.get(part.lower(), OTHER)
            if code not in found:
                found.append(code)
    return found


def labels() -> Iterable[str]:
    """The labels the unsubscribe page offers, in its order."""
    return OFFERED.values()
