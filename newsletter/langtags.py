"""Language tags (BCP 47, RFC 5646): what an article is written in, what a reader reads.

We keep a tag's primary language subtag, lower case ("ar-JO" → "ar", "en-US" → "en"): a
reader who reads Arabic reads it whether the story was filed from Amman or Cairo, and the
site's languages (settings.languages) are named the same way. A tag that is not well formed
is refused with the reason, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# RFC 5646 section 2.1 "langtag" (grandfathered and private-use-only tags are refused: they
# name no language we could match a reader to). Case-insensitive.
_LANGTAG = re.compile(r"""
    (?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})
    (?:-[a-z]{4})?                                  # script
    (?:-(?:[a-z]{2}|[0-9]{3}))?                     # region
    (?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*        # variants
    (?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*             # extensions
    (?:-x(?:-[a-z0-9]{1,8})+)?                      # private use
""", re.IGNORECASE | re.VERBOSE)

MAX_LENGTH = 64  # well past any real tag; bounds what we parse


def primary(tag: str) -> str:
    """The primary language subtag of a BCP 47 tag, lower case; ValueError if not one.

    POSIX-style underscores ("en_US", common in CMS exports and feeds) count as hyphens.
    """
    text = tag.strip().replace("_", "-") if isinstance(tag, str) else ""
    match = _LANGTAG.fullmatch(text) if 0 < len(text) <= MAX_LENGTH else None
    if match is None:
        raise ValueError(f"not a BCP 47 language tag (such as 'en' or 'ar-JO'): {tag!r}"[:120])
    return match.group("language").split("-")[0].lower()


def among(tags: Iterable[str], offered: Iterable[str]) -> tuple[str, ...]:
    """Tags as primary subtags, each once, in the order given; ValueError for a malformed tag
    or one outside ``offered`` (the site's languages)."""
    # The site's languages as primary subtags too (LANGUAGES may name "pt-br").
    offered = tuple(dict.fromkeys(t.split("-")[0].lower() for t in offered))
    out: dict[str, None] = {}
    for tag in tags:
        lang = primary(tag)
        if lang not in offered:
            raise ValueError(f"{lang!r} is not one of this site's languages "
                             f"({', '.join(offered)})")
        out[lang] = None
    return tuple(out)


def split(text: str | None) -> tuple[str, ...]:
    """A reader's stored languages ("ar,en", or "ar;en"/"ar|en" from an import) as a tuple."""
    return tuple(p.strip() for p in re.split(r"[,;|\s]+", text or "") if p.strip())

