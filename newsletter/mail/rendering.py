"""Render emails from ``email_templates/<name>/{subject.txt,body.txt,body.html}``.

One :class:`Renderer` (built by :meth:`Renderer.from_settings`; :func:`renderer` is this
process's) owns the Jinja environment, its filters and globals, premailer and every cache,
each a bounded :class:`~newsletter.mail.lru.LRU` whose bound is named beside its reason.
It reads no database: :meth:`Renderer.digest` takes a digest as plain data
(:class:`~newsletter.mail.digest.DigestContent`, loaded by
``newsletter.editions.content.load_batch``) and gives back its MIME template.

Rendering is split in two so that the expensive part runs once per distinct content:

* :meth:`Renderer.render` (whole document) and :meth:`Renderer.assemble` (premailer per
  fragment, see fragments.py) run Jinja2 and premailer with :func:`placeholder` markers
  standing in for the per-reader values (address, unsubscribe and preferences links);
* mime.MessageTemplate (or :func:`personalise`, for a page) swaps the markers for one
  reader's values, escaping them for the HTML part.

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

import html as _html
import logging
import re
import secrets
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cssutils
import jinja2
import premailer

from newsletter import click_links, i18n
from newsletter.config import get_settings
from newsletter.mail import digest, fragments, mime
from newsletter.mail.lru import FIFO, LRU
from newsletter.metrics import DIGEST_RENDERS, PREMAILER_RUNS
from newsletter.untrusted import strip_controls

if TYPE_CHECKING:
    from newsletter.config import Settings

__all__ = [
    "MARK",
    "TEMPLATES_DIR",
    "RenderedEmail",
    "Renderer",
    "personalise",
    "placeholder",
    "premailer_calls",
    "render",
    "renderer",
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


def _http_url(value: object) -> str:
    # Feed- and editor-supplied links: escaping keeps them inside the attribute, this keeps
    # "javascript:" and "data:" out of it.
    url = str(value).strip()
    return url if url.lower().startswith(("https://", "http://")) else ""


def _join_and(items: Any, sep: str = ", ", last: str = " and ") -> str:
    items = [str(i) for i in items]
    return sep.join(items[:-1]) + last + items[-1] if len(items) > 1 else "".join(items)


# Unicode's isolates: FIRST STRONG ISOLATE … POP DIRECTIONAL ISOLATE, <bdi> for plain text
# (a subject, a list of topic names in a sentence, the text part).
FSI, PDI = "\u2068", "\u2069"


def isolate(value: Any, direction: str = "ltr") -> str:
    """``value`` set apart from text running in ``direction``, laid out by its own first
    strong letter, when it holds letters of the other direction: "سوريا" in an English
    sentence (or "Energy" in an Arabic one) leaves the commas and words around it in place."""
    return _isolated(str(value), direction)


# Topic names and headlines, asked for in every render of every digest that names them (a
# look at each letter): the few hundred of an edition are worked out once.
@lru_cache(maxsize=4096)
def _isolated(text: str, direction: str) -> str:
    other = ("L",) if direction == "rtl" else ("R", "AL")
    if any(unicodedata.bidirectional(ch) in other for ch in text):
        return f"{FSI}{text}{PDI}"
    return text


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    # The HTML as the fragment renderer joined it (shared article fragments among the
    # pieces), and the text likewise with the digest's topic sections among its pieces: mime
    # encodes each shared piece once per process. None for a whole-document render.
    html_parts: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    text_parts: tuple[str, ...] | None = field(default=None, repr=False, compare=False)


def template_names() -> list[str]:
    """The email templates available (folders of ``TEMPLATES_DIR`` not starting with ``_``)."""
    return sorted(
        p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")
    )


def _checked(template: str) -> str:
    if not template or "/" in template or "\\" in template or template.startswith((".", "_")):
        raise ValueError(f"invalid email template name {template!r}")
    return template


_WS = re.compile(r"\s+")


def _one_line(s: str) -> str:
    return _WS.sub(" ", s).strip()


def text_lines(s: str) -> str:
    """A plain-text body as sent: no trailing spaces, no runs of blank lines."""
    # Trailing spaces left by template indentation would be quoted-printable encoded as =20
    # on the wire; runs of blank lines come from skipped blocks.
    lines = [line.rstrip() for line in s.splitlines()]
    out = "\n".join(lines)
    while "\n\n\n" in out:  # str.replace: a third of re.sub's time on a digest's text
        out = out.replace("\n\n\n", "\n\n")
    out = out.strip("\n")
    return out + "\n"


# --- the renderer --------------------------------------------------------------------------

# textwrap is the costliest step of a plain-text digest, and the same titles and summaries
# recur in thousands of digests of an edition.
WORDWRAP_CACHE = 8192
# Encoded messages of distinct digests kept per worker process: ~10 kB each in memory (the
# articles, topics and layout they hold are shared: mime.Shared). A key recurs across an
# edition's batches; only digests more than one reader gets are kept (_worth_keeping). At
# 100,000 readers (30,402 distinct digests, 9,166 shared): 6,144 entries rendered 38,381
# times, but a 10,000-reader run no longer fills them and the worker's RSS grew x1.25 from it
# (387 -> 485 MB; the target is 1.25); 5,120 entries render 39,863 times at x1.21 (470 MB).
# Keeping every digest, 6,144 entries rendered 43,563 times (bench, 2026-11-28).
DIGEST_CACHE = 5120
# Most of an edition's distinct digests have one reader (21,236 of 30,402 at 100,000
# readers): kept, they pushed out shared ones before their next reader came. A digest is kept
# when the planner has found a second reader for it by the time this process first meets it
# (edition_digests.shared), or when this process meets it again. Replayed on a real edition
# (bench/cache_sim.py), that is 39.0k renders instead of 43.5k with 6,144 kept (see above).
# Remembered as hashes (~50 bytes a key where the tuples took ~270; two keys with one hash
# would only keep a digest that need not be kept): two generations of 8,192 before.
RENDERED_ONCE = 16_384
# Message templates of other rendered emails (notices: a variant per choice of topics and
# frequency), so a burst of sign-ups encodes each variant once.
MESSAGE_CACHE = 256
# Rendered notices: one per (template, topics, frequency) chosen lately.
NOTICE_CACHE = 256


class Renderer:
    """Everything rendering needs, owned in one place: the Jinja environment with its filters
    and globals, premailer, and every cache (each a bounded :class:`LRU`, its bound named
    beside its reason here, in :mod:`fragments`, :mod:`digest` and :mod:`mime`).

    Build it with :meth:`from_settings` (or :func:`renderer` for this process's own); a test
    that wants empty caches builds a fresh one.
    """

    def __init__(self, *, from_address: str, list_id: str, site_name: str, base_url: str,
                 timezone: str = "UTC", lead_stories: int | None = None,
                 templates_dir: Path = TEMPLATES_DIR, click_tracking: str = "off",
                 language: str = "en") -> None:
        self.mark = MARK
        self.settings: Settings | None = None  # what from_settings built it from
        self.from_address = from_address
        self.list_id = list_id
        self.env = jinja2.Environment(
            finalize=_finalize,
            loader=jinja2.FileSystemLoader(templates_dir),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Templates only change with a deploy; skip the per-render mtime stat.
            auto_reload=False,
            cache_size=-1,
        )
        # {% trans %} and _() in the reader's language: the render's ``locale`` variable,
        # so the language is an input of each render and of every cache key it reaches.
        i18n.install(self.env)
        self._jinja_wordwrap = self.env.filters["wordwrap"]
        self.wordwraps = FIFO(WORDWRAP_CACHE)
        self.env.filters["http_url"] = _http_url
        self.env.filters["wordwrap"] = self._wordwrap
        self.env.filters["join_and"] = _join_and
        self.env.filters["isolate"] = isolate
        self.fragments = fragments.Fragments(self)
        self.contexts = digest.Contexts(
            timezone=timezone, base_url=base_url, lead_stories=lead_stories, language=language,
            common={"site_name": site_name, "base_url": base_url,
                    **{n: placeholder(n) for n in PERSONAL}},
            click_tracking=click_tracking,
            click_reader=placeholder(click_links.READER_PART) if click_tracking == "reader" else "")
        self.shared_chunks = mime.shared_chunk_cache()
        self.digests = LRU(DIGEST_CACHE)
        self.rendered_once = LRU(RENDERED_ONCE)
        self.messages = LRU(MESSAGE_CACHE)
        self.notices = LRU(NOTICE_CACHE)
        self.premailer_runs = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Renderer:
        settings = settings or get_settings()
        built = cls(from_address=settings.from_address, list_id=settings.list_id,
                    site_name=settings.site_name, base_url=settings.base_url,
                    timezone=settings.timezone, lead_stories=settings.digest_lead_stories,
                    click_tracking=settings.click_tracking, language=settings.language)
        built.settings = settings
        return built

    # --- filters -------------------------------------------------------------------------

    def _wordwrap(self, s: Any, width: int = 79, break_long_words: bool = True,
                  wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
        key = (str(s), width, break_long_words, wrapstring, break_on_hyphens)
        out = self.wordwraps.get(key)
        if out is None:
            out = self.wordwraps.put(key, self._jinja_wordwrap(self.env, *key))
        return out

    # --- premailer -----------------------------------------------------------------------

    def inline_css(self, document: str) -> str:
        """One premailer run over ``document`` (counted: benchmarks assert it is per
        fragment and layout, not per digest)."""
        with self._lock:
            self.premailer_runs += 1
        PREMAILER_RUNS.inc()
        return _inline_css(document)

    def text_lines(self, s: str) -> str:
        return text_lines(s)

    # --- rendering -----------------------------------------------------------------------

    def render(self, template: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render ``email_templates/<template>/`` with ``context``, premailer over the whole
        HTML document (notices, and the reference the fragment renderer is checked against)."""
        subject, text = self.text_parts(template, context)
        html = self.inline_css(
            self.env.get_template(f"{template}/body.html").render(dict(context)))
        return RenderedEmail(subject=subject, text=text, html=html)

    def render_once(self, template: str, context: Mapping[str, Any]) -> RenderedEmail:
        """:meth:`render`, kept by template and context (which must then be made of dicts,
        lists and scalars): notices have a variant per choice of topics and frequency."""
        key = (template, fragments.frozen(dict(context)))
        hit = self.notices.get(key)
        return hit if hit is not None else self.notices.put(key, self.render(template, context))

    def text_parts(self, template: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """The subject line and the plain-text body of ``email_templates/<template>/``."""
        _checked(template)
        ctx = dict(context)
        try:
            subject_t = self.env.get_template(f"{template}/subject.txt")
        except jinja2.TemplateNotFound:
            raise LookupError(f"no email template {template!r} in {TEMPLATES_DIR}") from None
        subject = _one_line(subject_t.render(ctx))
        text = text_lines(self.env.get_template(f"{template}/body.txt").render(ctx))
        return subject, text

    def assemble(self, template: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Like :meth:`render`, with premailer per fragment and per shell (fragments.py)."""
        groups: list[str] = []  # the text partials the body used directly (a digest's topics)
        subject, text = self.text_parts(template, {**context, "_nl_text_groups": groups})
        parts = self.fragments.html_parts(_checked(template), context)
        return RenderedEmail(subject=subject, text=text, html="".join(parts),
                             html_parts=tuple(parts),
                             text_parts=tuple(self.fragments.text_pieces(text, groups)))

    # --- digests -------------------------------------------------------------------------

    def rendered_digest(self, content: digest.DigestContent) -> RenderedEmail:
        """One digest (or alert), rendered: what the preview shows and the send encodes."""
        # The template is the edition's kind: email_templates/digest/ or email_templates/alert/.
        # Premailer runs per article fragment and per layout shell, not per digest.
        result = self.assemble(content.edition.kind, self.contexts.of(content))
        DIGEST_RENDERS.inc()
        return result

    def digest(self, content: digest.DigestContent) -> mime.MessageTemplate:
        """The message of one digest, rendered and encoded once per process while kept."""
        key = content.cache_key[:3]
        held = self.digests.get(key)
        if held is not None and held[0] == content.version:
            return held[1]
        template = self.message_template(self.rendered_digest(content), keep=False)
        if self._worth_keeping(key, content.shared):
            self.digests.put(key, (content.version, template, content.article_ids))
        return template

    def held(self, edition_id: int, cutoff_at: datetime,
             content_key: str) -> tuple[str, tuple[int, ...]] | None:
        """(version, article ids) of a digest this renderer keeps encoded, or None; asked by
        the loader so that it reads a kept digest's items only if its articles changed.
        Asking marks it recently used: a batch smaller than :data:`DIGEST_CACHE` cannot push
        it out before it is sent."""
        held = self.digests.get((edition_id, cutoff_at.isoformat(), content_key))
        return None if held is None else (held[0], held[2])

    def story(self, article_id: int, updated_at: datetime) -> digest.Story | None:
        """The story of that article version if this renderer met it lately (the loader
        then need not fetch its row)."""
        return self.contexts.stories.get((article_id, updated_at))

    def _worth_keeping(self, key: tuple[Any, ...], shared: bool) -> bool:
        if shared:
            return True
        h = hash(key)
        if h in self.rendered_once:
            return True
        self.rendered_once.put(h, True)
        return False

    # --- messages ------------------------------------------------------------------------

    def message_template(self, rendered: RenderedEmail, links: Mapping[str, str] | None = None,
                         *, keep: bool = True) -> mime.MessageTemplate:
        """The MIME template of rendered content, kept (``keep``) for every later reader.

        ``links`` are needed only for a subject that names the reader (then the template is
        theirs alone and not kept).
        """
        personal_subject = has_placeholders(rendered.subject)
        if personal_subject and links is None:
            raise ValueError("this email's subject is personal: it has no template to share")
        if keep and not personal_subject:
            hit = self.messages.get(rendered)
            if hit is not None:
                return hit
        subject = personalise(rendered, links).subject if personal_subject \
            else rendered.subject
        template = mime.MessageTemplate(
            from_addr=self.from_address, subject=subject, list_id=self.list_id,
            text=_pieces(rendered.text_parts) if rendered.text_parts is not None
            else _with_placeholders(rendered.text),
            html=_pieces(rendered.html_parts) if rendered.html_parts is not None
            else _with_placeholders(rendered.html),
            shared_chunks=self.shared_chunks)
        if keep and not personal_subject:
            self.messages.put(rendered, template)
        return template


def _pieces(parts: tuple[str, ...]) -> list[str | tuple[str]]:
    """Rendered pieces as mime.MessageTemplate takes them: those every digest shares (an
    article, a topic, the layout) as mime.Shared, encoded once per process."""
    out: list[str | tuple[str]] = []
    for part in parts:
        if type(part) is fragments.Inlined and not has_placeholders(part):
            out.append(part)  # an Inlined is a mime.Shared: the same object every time
        else:
            out.extend(_with_placeholders(part))
    return out


def _with_placeholders(text: str) -> list[str | tuple[str]]:
    """``text`` as mime.MessageTemplate takes it: literal text and (name,) placeholders."""
    if not has_placeholders(text):
        return [text]
    return [p if i % 2 == 0 else (p,) for i, p in enumerate(split_placeholders(text))]


_process_renderer: Renderer | None = None


def renderer() -> Renderer:
    """This process's renderer, built from the settings (afresh when they are reloaded)."""
    global _process_renderer
    settings = get_settings()
    current = _process_renderer
    if current is None or current.settings is not settings:
        current = _process_renderer = Renderer.from_settings(settings)
    return current


def render(template: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render ``email_templates/<template>/`` whole with this process's renderer."""
    return renderer().render(template, context)


def premailer_calls() -> int:
    """How many times this process's renderer has run premailer."""
    return renderer().premailer_runs


# --- premailer -----------------------------------------------------------------------------

def _inline_css(document: str) -> str:
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


# --- personalisation ---------------------------------------------------------------------

# Only [a-z0-9_]: survives autoescape, lxml serialisation and href quoting unchanged. Names
# are words joined by single underscores so the closing "__" is unambiguous.
_NAME = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")

# What every marker of this process starts with: 64 random bits no text from outside can
# hold, since they exist only in this process's memory (rendered content is personalised
# before it leaves, and caches of it are per process).
MARK = f"__nl{secrets.token_hex(8)}_"


# The per-reader values every email carries (compose.personal_links gives them).
PERSONAL = ("email", "unsubscribe_url", "preferences_url")


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
    return (split_placeholders(rendered.subject), split_placeholders(rendered.text),
            split_placeholders(rendered.html))


def personalise(rendered: RenderedEmail, values: Mapping[str, str]) -> RenderedEmail:
    """Replace each placeholder with its value: raw in subject and text, escaped in the HTML.

    Raises KeyError if the email holds a placeholder that ``values`` lacks. (Messages sent
    to many readers are personalised by mime.MessageTemplate instead, found once.)
    """
    subject, text, html = segments(rendered)
    escaped = {k: _html.escape(v, quote=True) for k, v in values.items()}
    return RenderedEmail(
        subject=_join(subject, values), text=_join(text, values), html=_join(html, escaped)
    )
