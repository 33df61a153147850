"""The signed story links of digests and alerts: ``{BASE_URL}/r/{token}[/{reader}]``.

A floor module so that the renderer (newsletter/mail, which imports no room) can mint them
while it builds an edition's shared article fragments, and the web room can read them.

``token`` names an edition, an article and the topic it was filed under, nothing more: the
same for every reader of the edition, so it is minted once per process and edition × story ×
topic and lives inside the shared fragments. In ``reader`` mode a second signed part names
the delivery; it is the per-reader value the renderer leaves as a placeholder (like the
unsubscribe link), so the shared fragments stay shared.

The target is never in the token: /r/ looks the article up and redirects to its row's URL,
so a token can never send a reader anywhere the newsroom did not publish. Tokens do not
expire (a digest in an archive folder keeps working); keys rotate as in tokens.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature

from newsletter.config import get_settings
from newsletter.errors import InvalidToken
from newsletter.tokens import UntimedLinkSerializer

# The placeholder name of the per-reader part (mail.rendering.placeholder) and the value it
# takes outside reader mode: nothing, so the link is the aggregate one.
READER_PART = "click_reader"


@dataclass(frozen=True, slots=True)
class ClickTarget:
    edition_id: int
    article_id: int
    topic_id: int
    delivery_id: int | None = None


@lru_cache(maxsize=8)
def _serializer(keys: tuple[str, ...], purpose: str) -> UntimedLinkSerializer:
    # No timestamp (URLSafeSerializer, not the timed one): 8 characters shorter, and a
    # click link has no reason to expire. itsdangerous wants the keys oldest first.
    return UntimedLinkSerializer(list(reversed(keys)), salt=f"newsletter.{purpose}")


def _keys() -> tuple[str, ...]:
    return get_settings().signing_keys


def story_token(edition_id: int, article_id: int, topic_id: int) -> str:
    """The part of a story link every reader of the edition shares (it names no reader)."""
    return _serializer(_keys(), "click").dumps([edition_id, article_id, topic_id])


def story_link(base_url: str, edition_id: int, article_id: int, topic_id: int) -> str:
    return f"{base_url}/r/{story_token(edition_id, article_id, topic_id)}"


def reader_part(delivery_id: int) -> str:
    """What follows a story link in ``reader`` mode: ``/`` and a token naming the delivery."""
    return "/" + _serializer(_keys(), "click-reader").dumps(delivery_id)


def read(token: str, reader: str | None = None) -> ClickTarget:
    """What a link names; raises InvalidToken for anything not signed by us."""
    try:
        data = _serializer(_keys(), "click").loads(token)
        delivery = _serializer(_keys(), "click-reader").loads(reader) if reader else None
    except BadSignature as exc:
        raise InvalidToken("this link is not valid") from exc
    if (not isinstance(data, list) or len(data) != 3
            or not all(type(n) is int and n > 0 for n in data)
            or (delivery is not None and (type(delivery) is not int or delivery <= 0))):
        raise InvalidToken("this link is not valid")
    return ClickTarget(data[0], data[1], data[2], delivery)
