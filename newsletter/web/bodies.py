"""How much of a request body each route reads: one table, enforced before any parsing.

Starlette reads a form or a JSON body whole into memory before a route sees it, so without
a ceiling one client posting gigabytes (with a Content-Length, or chunked without one) fills
a web process. This middleware reads the body first, stops counting at the route's limit,
and answers 413 itself; the route then gets the body it read, unchanged.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

KB, MB = 1024, 1024 * 1024

# (method, path pattern, limit in bytes), first match wins. A reader's form is a few hundred
# bytes (an address is at most 320); 16 KB leaves room for every topic ticked.
LIMITS: tuple[tuple[str, str, int], ...] = (
    ("POST", r"/subscribe", 16 * KB),
    ("POST", r"/(confirm|preferences|unsubscribe|resubscribe)/.*", 16 * KB),
    ("POST", r"/api/bounces", 10 * MB),  # a raw message with the original attached
    # imports.MAX_ROWS_PER_REQUEST rows of up to ~500 bytes each (address, topics, dates).
    ("POST", r"/api/subscribers", 5 * MB),
    ("POST", r"/api/articles", 1 * MB),
    ("*", r"/api/.*", 1 * MB),
    ("*", r".*", 64 * KB),  # anything else that takes a body
)
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@lru_cache(maxsize=256)
def _limit(method: str, path: str) -> int:
    for wanted, pattern, limit in _COMPILED:
        if wanted in ("*", method) and pattern.fullmatch(path):
            return limit
    raise AssertionError("the table ends with a catch-all")  # pragma: no cover


# DOTALL: a path may hold an encoded newline, and ".*" must still catch it (else a 500).
_COMPILED = tuple((m, re.compile(p, re.DOTALL), n) for m, p, n in LIMITS)


class BodyLimit:
    """ASGI middleware: a body over its route's limit is refused with 413, unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = _limit(scope["method"], path if len(path) <= 512 else path[:512])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            return await _too_large(scope, send, limit)
        messages: list[Message] = []
        size = 0
        while True:  # counts what arrives, so a chunked body without a length is held too
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                return await _too_large(scope, send, limit)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    size = f"{limit // MB} MB" if limit >= MB else f"{limit // KB} KB"
    if scope["path"].startswith("/api/"):
        body = json.dumps({"detail": f"request body over {size}"}).encode()
        content_type = b"application/json"
    else:
        body = _page(size).encode()
        content_type = b"text/html; charset=utf-8"
    # The rest of the body is never read: close the connection rather than parse it as
    # the next request.
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _page(size: str) -> str:
    from newsletter.config import get_settings
    from newsletter.web.deps import templates

    return templates.get_template("message.html").render(
        site_name=get_settings().site_name, heading="Too much to send",
        lines=(f"This form sent more than {size}, more than any of our forms needs.",
               "Nothing has been changed."),
        link={"url": "/subscribe", "label": "Back to the sign-up page"})
