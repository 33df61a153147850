"""One reader's message from shared rendered content: the per-reader values (address and
links) put where the templates placed them, then wrapped as a (DKIM-signed) message."""

from __future__ import annotations

from typing import Any

from newsletter import tokens
from newsletter.config import get_settings
from newsletter.mail import dkim as signing
from newsletter.mail import fragments, mime, rendering


def personal_placeholders() -> dict[str, str]:
    return {name: rendering.placeholder(name)
            for name in ("email", "unsubscribe_url", "preferences_url")}


def common_context() -> dict[str, Any]:
    settings = get_settings()
    return {"site_name": settings.site_name, "base_url": settings.base_url,
            **personal_placeholders()}


def personal_links(reader_id: int, email: str, edition_id: int | None = None) -> dict[str, str]:
    base = get_settings().base_url
    extra = {"e": edition_id} if edition_id is not None else {}
    return {
        "email": email,
        "unsubscribe_url": f"{base}/unsubscribe/{tokens.make('unsubscribe', reader_id, email, **extra)}",
        "preferences_url": f"{base}/preferences/{tokens.make('preferences', reader_id, email)}",
    }


def compose(rendered: rendering.RenderedEmail, links: dict[str, str], message_id: str) -> bytes:
    """Personalise shared content for one reader and wrap it as a message."""
    return personal_message(message_template(rendered, links), links, message_id)


def personal_message(template: mime.MessageTemplate, links: dict[str, str],
                     message_id: str) -> bytes:
    """One reader's message (signed when DKIM is on) from a content's template."""
    return signing.sign(template.message(
        to_addr=links["email"], message_id=message_id, unsubscribe_url=links["unsubscribe_url"],
        values=links))


def message_template(rendered: rendering.RenderedEmail,
                     links: dict[str, str] | None = None) -> mime.MessageTemplate:
    """The MIME template of rendered content, kept on it for every later reader.

    ``links`` are needed only for a subject that names the reader (then the template is
    theirs alone and not kept).
    """
    template = rendered._message
    if template is not None:
        return template
    settings = get_settings()
    personal_subject = rendering.has_placeholders(rendered.subject)
    if personal_subject and links is None:
        raise ValueError("this email's subject is personal: it has no template to share")
    subject = rendering.personalise(rendered, links).subject if personal_subject \
        else rendered.subject
    html = _shared_pieces(rendered._html_parts) if rendered._html_parts is not None \
        else _with_placeholders(rendered.html)
    template = mime.MessageTemplate(
        from_addr=settings.from_address, subject=subject, list_id=settings.list_id,
        text=_shared_pieces(rendered._text_parts) if rendered._text_parts is not None
        else _with_placeholders(rendered.text), html=html)
    if not personal_subject:
        object.__setattr__(rendered, "_message", template)
    return template


def _shared_pieces(parts: list[str]) -> list[str | tuple[str]]:
    """Rendered pieces as mime.MessageTemplate takes them: those every digest shares (an
    article, a topic, the layout) as mime.Shared, encoded once per process."""
    out: list[str | tuple[str]] = []
    for part in parts:
        if type(part) is fragments.Inlined and not rendering.has_placeholders(part):
            out.append(part)  # an Inlined is a mime.Shared: the same object every time
        else:
            out.extend(_with_placeholders(part))
    return out


def _with_placeholders(text: str) -> list[str | tuple[str]]:
    """``text`` as mime.MessageTemplate takes it: literal text and (name,) placeholders."""
    if not rendering.has_placeholders(text):
        return [text]
    return [p if i % 2 == 0 else (p,) for i, p in enumerate(rendering.split_placeholders(text))]
