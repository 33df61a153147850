"""Tags: the names articles are filed under, and their slugs (what readers' topics match)."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import Tag


def slugify(name: str) -> str:
    """'Gulf States' → 'gulf-states'; keeps non-Latin letters (سوريا stays سوريا)."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")
    return text[:64]


def get_or_create_tags(session: Session, names: list[str]) -> list[Tag]:
    """Tags for ``names`` in the given order, creating missing ones."""
    by_slug: dict[str, str] = {}
    for name in names:
        by_slug.setdefault(slugify(name), name)
    existing = {t.slug: t for t in session.scalars(select(Tag).where(Tag.slug.in_(by_slug)))}
    tags = []
    for slug, name in by_slug.items():
        tag = existing.get(slug)
        if tag is None:
            tag = Tag(slug=slug, name=name)
            session.add(tag)
        tags.append(tag)
    session.flush()
    return tags
