"""Render emails from ``email_templates/<name>/{subject.txt,body.txt,body.html}``.

Rendering is split in two so that the expensive part runs once per distinct content:

* :func:`render` runs Jinja2 and premailer (~tens of ms) with :func:`placeholder` markers
  standing in for the per-reader values (address, unsubscribe and preferences links);
* :func:`personalise` swaps the markers for one reader's values (a few microseconds: the
  marker positions are found once per rendering), escaping them for the HTML part.

Templates must therefore treat per-reader values as opaque strings: print them, put them in
``href``, but never transform them (``upper``, ``truncate``, ``wordwrap``…), or the
placeholder and the real value would render differently.

Article, feed and reader text is data and can never become a marker: every marker carries
:data:`MARK`, a secret drawn afresh by each process and never sent anywhere, so only the
positions where a template printed :func:`placeholder` are personalised — a feed entry
whose link holds ``__nl_email__`` gets that text, not a reader's address. And every value a
template prints loses its C0 control characters (:func:`_finalize`): the renderers use
them as their own boundaries, and no mail client shows them.
"""

from __future__ import annotations

import functools
import html as _html
import logging
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cssutils
import jinja2
import premailer

from newsletter.metrics import PREMAILER_RUNS
from newsletter.untrusted import strip_controls

__all__ = [
    "TEMPLATES_DIR",
    "RenderedEmail",
    "personalise",
    "placeholder",
    "premailer_calls",
    "render",
    "segments",
    "template_names",
]


def _templates_dir() -> Path:
    # A wheel carries the templates inside the package; a source checkout keeps them at the
    # repository root (see pyproject's force-include).
    package = Path(__file__).resolve().parent.parent  # newsletter/
    packaged = package / "email_templates"
    if packaged.is_dir():
        return packaged
    return package.parent / "email_templates"


TEMPLATES_DIR: Path = _templates_dir()

# cssutils reports every vendor property (mso-*, -webkit-*) as a warning on each parse.
cssutils.log.setLevel(logging.CRITICAL)


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith((".html", ".htm"))


def _finalize(value: Any) -> Any:
    # Every {{ value }} of every template passes here. Markup is ours (fragments, slots);
    # a plain string is data, whatever it came from: the fragment renderer's boundaries are
    # control characters (fragments._F), and in a header or an XML parser they are errors.
    if type(value) is str:
        return strip_controls(value)
    return value


_env = jinja2.Environment(
    finalize=_finalize,
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=_autoescape,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    # Templates only change with a deploy; skip the per-render mtime stat.
    auto_reload=False,
    cache_size=-1,
)


def _http_url(value: object) -> str:
    # Feed- and editor-supplied links: escaping keeps them inside the attribute, this keeps
    # "javascript:" and "data:" out of it.
    url = str(value).strip()
    return url if url.lower().startswith(("https://", "http://")) else ""


def _join_and(items: Any, sep: str = ", ", last: str = " and ") -> str:
    items = [str(i) for i in items]
    return sep.join(items[:-1]) + last + items[-1] if len(items) > 1 else "".join(items)


_env.filters["http_url"] = _http_url


@functools.lru_cache(maxsize=8192)
def _wordwrap_cached(s: str, width: int, break_long_words: bool, wrapstring: str | None,
                     break_on_hyphens: bool) -> str:
    return _jinja_wordwrap(_env, s, width, break_long_words, wrapstring, break_on_hyphens)


def _wordwrap(s: Any, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    # textwrap is the costliest step of a plain-text digest, and the same titles and
    # summaries recur in thousands of digests of an edition.
    return _wordwrap_cached(str(s), width, break_long_words, wrapstring, break_on_hyphens)


_jinja_wordwrap = _env.filters["wordwrap"]
_env.filters["wordwrap"] = _wordwrap
_env.filters["join_and"] = _join_and


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    # Where the placeholders are, found on the first personalise() and reused for every
    # later reader: scanning a 25 kB digest costs more than the substitution itself.
    _segments: tuple[list[str], list[str], list[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # The MIME message built from it once (mail.compose), for every later reader.
    _message: Any = field(default=None, init=False, repr=False, compare=False)
    # The HTML as the pieces fragments.render joined (shared article fragments among them).
    _html_parts: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    # The text likewise, with the digest's topic sections among its pieces.
    _text_parts: list[str] | None = field(default=None, init=False, repr=False, compare=False)


def template_names() -> list[str]:
    """The email templates available (folders of ``TEMPLATES_DIR`` not starting with ``_``)."""
    return sorted(
        p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")
    )


# --- premailer ---------------------------------------------------------------------------

_premailer_lock = threading.Lock()
_premailer_count = 0


def premailer_calls() -> int:
    """How many times this process has run premailer (benchmarks assert it is per content)."""
    return _premailer_count


def _inline_css(document: str) -> str:
    global _premailer_count
    with _premailer_lock:
        _premailer_count += 1
    PREMAILER_RUNS.inc()
    inliner = premailer.Premailer(
        document,
        # Never fetch anything: no <link> stylesheets, no external_styles, no base_url
        # joining of relative links (our links are absolute already).
        allow_network=False,
        allow_loading_external_files=False,
        base_url=None,
        disable_link_rewrites=True,
        disable_validation=True,
        # Rules premailer cannot inline (@media) stay in a <style> block; the rest go.
        keep_style_tags=False,
        # Classes stay so the @media rules left in <style> still match.
        remove_classes=False,
        # !important is what lets a @media rule beat the inline style; keep it inline too.
        strip_important=False,
        cssutils_logging_level=logging.CRITICAL,
        # Otherwise CSS "width:100%; height:auto" overwrites the pixel width= that Outlook
        # needs on images and emits an invalid height="auto".
        disable_basic_attributes=["width", "height"],
    )
    out = inliner.transform(pretty_print=False)
    # premailer keeps the doctype only when it is spelled exactly as lxml writes it.
    if out.lstrip()[:9].upper() != "<!DOCTYPE":
        out = "<!DOCTYPE html>\n" + out
    return out


# --- rendering ---------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def _one_line(s: str) -> str:
    return _WS.sub(" ", s).strip()


def _text_lines(s: str) -> str:
    # Trailing spaces left by template indentation would be quoted-printable encoded as =20
    # on the wire; runs of blank lines come from skipped blocks.
    lines = [line.rstrip() for line in s.splitlines()]
    out = "\n".join(lines)
    while "\n\n\n" in out:  # str.replace: a third of re.sub's time on a digest's text
        out = out.replace("\n\n\n", "\n\n")
    out = out.strip("\n")
    return out + "\n"


def render(template: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render ``email_templates/<template>/`` with ``context``; the HTML gets its CSS inlined."""
    if not template or "/" in template or "\\" in template or template.startswith((".", "_")):
        raise ValueError(f"invalid email template name {template!r}")
    subject, text = render_text_parts(template, context)
    html = _inline_css(_env.get_template(f"{template}/body.html").render(dict(context)))
    return RenderedEmail(subject=subject, text=text, html=html)


def render_text_parts(template: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """The subject line and the plain-text body of ``email_templates/<template>/``."""
    if not template or "/" in template or "\\" in template or template.startswith((".", "_")):
        raise ValueError(f"invalid email template name {template!r}")
    ctx = dict(context)
    try:
        subject_t = _env.get_template(f"{template}/subject.txt")
    except jinja2.TemplateNotFound:
        raise LookupError(f"no email template {template!r} in {TEMPLATES_DIR}") from None
    subject = _one_line(subject_t.render(ctx))
    text = _text_lines(_env.get_template(f"{template}/body.txt").render(ctx))
    return subject, text


# --- personalisation ---------------------------------------------------------------------

# Only [a-z0-9_]: survives autoescape, lxml serialisation and href quoting unchanged. Names
# are words joined by single underscores so the closing "__" is unambiguous.
_NAME = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")

# What every marker of this process starts with: 64 random bits no text from outside can
# hold, since they exist only in this process's memory (rendered content is personalised
# before it leaves, and caches of it are per process).
MARK = f"__nl{secrets.token_hex(8)}_"


def placeholder(name: str) -> str:
    """The marker that :func:`personalise` replaces with ``values[name]``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"placeholder name must be lower-case words joined by '_': {name!r}")
    return f"{MARK}{name}__"


def has_placeholders(s: str) -> bool:
    return MARK in s


def split_placeholders(s: str) -> list[str]:
    """``s`` as [literal, name, literal, name, …, literal] around its placeholders."""
    parts: list[str] = []
    pos = 0
    start = s.find(MARK)
    while start >= 0:
        begin = start + len(MARK)
        end = s.find("__", begin)
        name = s[begin:end] if end > 0 else ""
        if not _NAME.fullmatch(name):
            # Only placeholder() writes MARK: a template transformed a per-reader value.
            raise ValueError(f"a placeholder was altered in rendering: {s[start:start + 60]!r}")
        parts += (s[pos:start], name)
        pos = end + 2
        start = s.find(MARK, pos)
    parts.append(s[pos:])
    return parts


def _join(parts: list[str], values: Mapping[str, str]) -> str:
    if len(parts) == 1:
        return parts[0]
    out = parts[:]
    for i in range(1, len(out), 2):
        try:
            out[i] = values[out[i]]
        except KeyError:
            # Sending "__nl_unsubscribe_url__" to a reader is worse than failing the send.
            raise KeyError(f"no value for placeholder {out[i]!r}") from None
    return "".join(out)


def segments(rendered: RenderedEmail) -> tuple[list[str], list[str], list[str]]:
    """Subject, text and HTML as [literal, name, literal, …, literal] around placeholders."""
    found = rendered._segments
    if found is None:
        found = (split_placeholders(rendered.subject), split_placeholders(rendered.text),
                 split_placeholders(rendered.html))
        object.__setattr__(rendered, "_segments", found)
    return found


def personalise(rendered: RenderedEmail, values: Mapping[str, str]) -> RenderedEmail:
    """Replace each placeholder with its value: raw in subject and text, escaped in the HTML.

    Raises KeyError if the email holds a placeholder that ``values`` lacks.
    """
    subject, text, html = segments(rendered)
    escaped = {k: _html.escape(v, quote=True) for k, v in values.items()}
    return RenderedEmail(
        subject=_join(subject, values), text=_join(text, values), html=_join(html, escaped)
    )
