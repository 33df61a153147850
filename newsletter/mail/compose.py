"""One reader's message from shared rendered content: the per-reader values (address and
links) put where the templates placed them, then wrapped as a (DKIM-signed) message."""

from __future__ import annotations

from typing import Any

from newsletter import click_links, tokens
from newsletter.config import get_settings
from newsletter.mail import dkim as signing
from newsletter.mail import mime, rendering


def personal_placeholders() -> dict[str, str]:
    return {name: rendering.placeholder(name) for name in rendering.PERSONAL}


def common_context() -> dict[str, Any]:
    settings = get_settings()
    return {"site_name": settings.site_name, "base_url": settings.base_url,
            **personal_placeholders()}


def personal_links(reader_id: int, email: str, edition_id: int | None = None,
                   delivery_id: int | None = None) -> dict[str, str]:
    settings = get_settings()
    base = settings.base_url
    extra = {"e": edition_id} if edition_id is not None else {}
    links = {
        "email": email,
        "unsubscribe_url": f"{base}/unsubscribe/{tokens.make('unsubscribe', reader_id, email, **extra)}",
        "preferences_url": f"{base}/preferences/{tokens.make('preferences', reader_id, email)}",
    }
    if settings.click_tracking == "reader" and delivery_id is not None:
        # One token per delivery, put at the end of every story link of the digest (the
        # links themselves are shared: see click_links).
        links[click_links.READER_PART] = click_links.reader_part(delivery_id)
    return links


def compose(rendered: rendering.RenderedEmail, links: dict[str, str], message_id: str) -> bytes:
    """Personalise shared content for one reader and wrap it as a message (its MIME
    template kept by this process's renderer for every later reader of the same content)."""
    template = rendering.renderer().message_template(rendered, links)
    return personal_message(template, links, message_id)


def personal_message(template: mime.MessageTemplate, links: dict[str, str],
                     message_id: str) -> bytes:
    """One reader's message (signed when DKIM is on) from a content's template."""
    return signing.sign(template.message(
        to_addr=links["email"], message_id=message_id, unsubscribe_url=links["unsubscribe_url"],
        values=links))
