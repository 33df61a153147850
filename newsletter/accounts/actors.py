"""Who is acting: the one value the doors pass to role checks and to the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter import audit
from newsletter.states import EditorRole

# The actor name of the automation token (NEWSLETTER_ADMIN_TOKEN).
ADMIN_TOKEN_ACTOR = "token:ADMIN_TOKEN"


@dataclass(frozen=True)
class Actor:
    """An editor in the console (``name`` = address), an API token (``token:NAME``), the
    automation token, or the command line (``cli``, which acts as an admin)."""

    name: str
    role: EditorRole
    editor_id: int | None = None
    ip: str | None = None

    def may(self, needed: EditorRole) -> bool:
        return self.role.allows(needed)


CLI = Actor(audit.CLI, EditorRole.ADMIN)
