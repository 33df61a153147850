"""Premailer per fragment, not per digest: the HTML of a digest assembled from inlined parts.

With 100,000 readers on 1–5 of 40 topics almost every digest is distinct, so premailer
(~20 ms on a 30-article document) cannot run per digest. Templates mark their parts:

* ``{% filter fragment %}…{% endfilter %}`` around a repeated block (a section heading, an
  article). Its Jinja output is inlined once per process, in the document's context, and
  reused by every digest that carries the same output (content-addressed: an edited article
  renders differently and is inlined afresh).
* ``{% call piece("name", value) %}…{% endcall %}``: a fragment whose output depends only on
  ``value`` (an article: its dict, never changed once rendered). Jinja renders its body once
  per process for each distinct value and reuses the output, in every mode and in the text
  part too: a digest of thirty articles then costs thirty lookups, not thirty renderings.
  The name tells apart the call sites of one template that show the same value differently.
* ``{{ partial("digest/section.html", section=section, lead_stories=5) }}``: a template
  rendered with these values alone, once per process for each distinct first value. A
  partial that is one article is a fragment; one made of fragments (a topic's section) is a
  *group*, cached with its fragment markers (their numbers are process-wide) and joined once
  inlined, so a digest costs a lookup per topic. In the text part the body's own partials
  (the sections) are cut out of the finished text, to be encoded once per process too.
* ``{% filter slot %}…{% endfilter %}`` around per-digest *text* (a title, a count, a list
  of topic names). Only text: slots must not hold tags, whose styles would then be skipped.

The shell (the document with the fragments taken out and the slots as markers) is inlined
once per distinct shell; a digest is the inlined shell with the slot texts put back
(escaped as lxml serialises text) and the inlined fragments in the region between the first
and last fragment. Inline styles depend on an element's tag, classes and ancestors, never on
its text, and the stylesheet has no sibling selectors, so the result is the same as premailer
over the whole document: tests/mail/test_equivalence.py checks that on sample digests.
Without the filters (whole-document mode) the templates render exactly as before.

:class:`Fragments` is this machinery for one :class:`~newsletter.mail.rendering.Renderer`,
which owns it: its filters and globals go into that renderer's Jinja environment, its
caches (fragments, shells, pieces, groups, the registry of fragment numbers, lxml text,
text lines) are its fields, each bounded: an :class:`~newsletter.mail.lru.LRU`, or a
:class:`~newsletter.mail.lru.FIFO` for those looked up for every article of every digest.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jinja2
import lxml.html
from markupsafe import Markup

from newsletter import i18n
from newsletter.mail import mime
from newsletter.mail.lru import FIFO, LRU

if TYPE_CHECKING:
    from newsletter.mail.rendering import Renderer

# Fragment boundary in the Jinja output: no printed value holds a C0 control character
# (rendering._finalize strips them), so only _fragment writes one.
_F = "\x01"
_REGION = "<!--nl-fragments-->"  # data is escaped: "<!--" in it is "&lt;!--"
_SENTINEL = "<!--nl-f-->"

# Bounded: articles of the last weeks, sections and a few shells (a few MB per process).
FRAGMENT_CACHE = 4096
SHELL_CACHE = 64
PIECE_CACHE = 8192  # Jinja output of keyed pieces: ~2 kB each, HTML and text
GROUP_CACHE = 2048  # inlined sections (a topic's stories in a week): ~10-40 kB each
LXML_TEXT_CACHE = 4096  # an edition's titles and topic lists recur
TEXT_LINES_CACHE = 4096  # a digest's topics, as every combination splits them
# Fragments and groups by number: an edition's articles, headlines and sections, many
# times over.
REGISTRY_MAX = 200_000


class Inlined(mime.Shared):
    """An inlined fragment (an article, a heading): the same object in every digest that
    carries it, so what is built from it (its encoded form) can be shared too: mime encodes
    it once per process, found by this very object (its hash computed once)."""

    __slots__ = ()


class Record(dict):
    """A template value that never changes once built (an article, a topic's section): a
    dict to templates, hashable by its content, that hash computed once. A piece or partial
    of it is then found in its cache at the cost of a stored hash, not of walking it."""

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hash = hash(frozen(dict(self)))

    def __hash__(self) -> int:  # type: ignore[override]
        return self._hash

    def _immutable(self, *_: Any, **__: Any) -> None:
        raise TypeError("a Record is not changed once built (its hash would lie)")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _immutable  # type: ignore[assignment]


def frozen(value: Any) -> Any:
    """A template value (dicts, lists and scalars) as something that can key a cache."""
    if isinstance(value, Record):
        return value
    if isinstance(value, dict):
        return tuple((k, frozen(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


class _Recorder:
    def __init__(self) -> None:
        self.slots: list[str] = []


_GROUPING = object()  # the recorder of a partial's own render: it keeps no slots


class _Registry:
    """Fragments and groups by number, the number being what a marker in Jinja output
    holds. Numbers are process-wide, not per render, so a partial's output with markers in
    it can be cached and reused by every digest. A fragment is its raw HTML; a group, the
    tuple (number, whitespace, number, …) of what it is made of.

    Bound: :data:`REGISTRY_MAX` nodes. Eviction: all at once, with the caches whose entries
    hold numbers (``on_reset``): numbers are never reused, so a render that still holds one
    fails (KeyError) and is redone, instead of showing another fragment."""

    def __init__(self, on_reset: Callable[[], None]) -> None:
        self.numbers: dict[str | tuple[Any, ...], int] = {}
        self.nodes: dict[int, str | tuple[Any, ...]] = {}
        self._next = itertools.count()
        self._on_reset = on_reset
        self._lock = threading.Lock()

    def register(self, node: str | tuple[Any, ...]) -> int:
        number = self.numbers.get(node)
        if number is not None:
            return number
        with self._lock:
            if len(self.nodes) >= REGISTRY_MAX:
                self.numbers.clear()
                self.nodes.clear()
                self._on_reset()
            number = self.numbers.get(node)
            if number is None:
                number = self.numbers[node] = next(self._next)
                self.nodes[number] = node
        return number


class Fragments:
    """Premailer per fragment and per shell for one renderer (see the module docstring)."""

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer
        self._env = renderer.env
        # Slot markers carry the process's secret (rendering.MARK) like placeholders, so a
        # title that says "__nls_0__" is only a title.
        self._slot_mark = renderer.mark + "slot"
        self._slot_re = re.compile(re.escape(self._slot_mark) + r"(\d+)__")
        self.fragments = FIFO(FRAGMENT_CACHE)
        self.shells = LRU(SHELL_CACHE)
        self.pieces = FIFO(PIECE_CACHE)
        self.groups = LRU(GROUP_CACHE)
        self.lxml_text = FIFO(LXML_TEXT_CACHE)
        self.text_lines = FIFO(TEXT_LINES_CACHE)
        # Cached outputs hold the old numbers: they go with them.
        self.registry = _Registry(on_reset=lambda: (self.pieces.clear(), self.groups.clear()))
        env = self._env
        env.filters["fragment"] = self._fragment
        env.filters["slot"] = self._slot
        env.globals["piece"] = self._piece
        env.globals["partial"] = self._partial

    # --- the template side ---------------------------------------------------------------

    @jinja2.pass_context
    def _fragment(self, ctx: jinja2.runtime.Context, value: str) -> Markup:
        if ctx.get("_nl_recorder") is None:
            return Markup(value)
        return Markup(f"{_F}{self.registry.register(str(value))}{_F}")

    def _rendered_once(self, where: tuple[Any, ...], value: Any,
                       render: Callable[[], Any]) -> str:
        """The output of ``render`` for ``value`` at ``where``, rendered once per process;
        found by content (a Record's hash is stored, so digests' shared articles cost a
        lookup)."""
        key = (*where, frozen(value))
        out = self.pieces.get(key)
        if out is None:
            out = self.pieces.put(key, str(render()))
        return out

    @jinja2.pass_context
    def _piece(self, ctx: jinja2.runtime.Context, name: str, value: Any,
               caller: jinja2.runtime.Macro) -> Markup:
        out = self._rendered_once((ctx.name or "", name, ctx.get(i18n.CONTEXT_NAME)), value,
                                  caller)
        return self._fragment(ctx, out) if (ctx.name or "").endswith(".html") else Markup(out)

    @jinja2.pass_context
    def _partial(self, ctx: jinja2.runtime.Context, template: str, /, **values: Any) -> Markup:
        """``{{ partial("_base/article.html", article=article) }}``: the partial rendered with
        these values alone, once per process for each distinct first value (like a piece,
        without a call block's cost: this runs for every article of every digest). The other
        values must be scalars (``lead_stories=5``).

        A leaf partial (an article) is one fragment. A partial whose own output is made of
        fragments (a topic's section of articles) renders them as markers and becomes one
        *group*: a digest then costs a lookup per section, and its inlined HTML is joined
        once per process and shared by every digest that carries the section.
        """
        # The render's language goes into the partial and its key: an article's "Read
        # more" differs between the English and the Arabic digest.
        values.setdefault(i18n.CONTEXT_NAME, ctx.get(i18n.CONTEXT_NAME))
        (_, value), *rest = values.items()
        rec = ctx.get("_nl_recorder")
        text_groups = ctx.get("_nl_text_groups")
        where = (template, rec is not None, *rest)

        def render() -> str:
            out = self._env.get_template(template).render(
                {**values, "_nl_recorder": _GROUPING} if rec is not None else values)
            return self._group(out) if rec is not None and _F in out else out
        out = self._rendered_once(where, value, render)
        if text_groups is not None:
            text_groups.append(out)
        if rec is None or not template.endswith(".html") or _F in out:
            return Markup(out)
        return self._fragment(ctx, out)

    def _group(self, out: str) -> str:
        """A partial's output made of fragments, as one marker (the whitespace around it)."""
        first, last = out.find(_F), out.rfind(_F)
        pieces = out[first + 1:last].split(_F)
        if any(not between.isspace() and between for between in pieces[1::2]):
            raise ValueError("a partial made of fragments has markup between them: "
                             "wrap every part of it in a fragment")
        members = tuple(int(p) if k % 2 == 0 else p for k, p in enumerate(pieces))
        return f"{out[:first]}{_F}{self.registry.register(members)}{_F}{out[last + 1:]}"

    @jinja2.pass_context
    def _slot(self, ctx: jinja2.runtime.Context, value: str) -> Markup:
        rec = ctx.get("_nl_recorder")
        if rec is None:
            return Markup(value)
        rec.slots.append(str(value))
        return Markup(f"{self._slot_mark}{len(rec.slots) - 1}__")

    # --- the document side ---------------------------------------------------------------

    def _as_lxml_text(self, html_text: str) -> str:
        """Text (with entities) as lxml writes it after parsing: what premailer would output."""
        if not any(c in html_text for c in "&<>"):
            return html_text
        out = self.lxml_text.get(html_text)
        if out is None:
            p = lxml.html.fragment_fromstring(f"<p>{html_text}</p>")
            out = self.lxml_text.put(
                html_text, lxml.html.tostring(p, encoding="unicode", method="html")[3:-4])
        return out

    def _inline(self, shell: str, fragments: list[str]) -> tuple[list[Any], list[str]]:
        """One premailer run: the shell with ``fragments`` in its region, split back apart."""
        doc = shell.replace(_REGION, _SENTINEL + _SENTINEL.join(fragments) + _SENTINEL, 1) \
            if fragments else shell
        out = self._renderer.inline_css(doc)
        if not fragments:
            return self._shell_parts(out), []
        parts = out.split(_SENTINEL)
        if len(parts) != len(fragments) + 2:
            raise RuntimeError("premailer lost a fragment sentinel")
        return self._shell_parts(parts[0] + _REGION + parts[-1]), parts[1:-1]

    def _shell_parts(self, inlined: str) -> list[Any]:
        # [literal, slot index, literal, …] found once per shell; the literal holding the
        # region as (before, after). Literals are Inlined: the same objects in every digest.
        parts: list[Any] = self._slot_re.split(inlined)
        for k in range(0, len(parts), 2):
            if _REGION in parts[k]:
                before, after = parts[k].split(_REGION, 1)
                parts[k] = (Inlined(before), Inlined(after))
            else:
                parts[k] = Inlined(parts[k])
        return parts

    def html_parts(self, template: str, context: Mapping[str, Any]) -> list[str]:
        """The inlined HTML of ``email_templates/<template>/body.html`` in the pieces it is
        joined from: the inlined fragments and groups among them are the very string objects
        every digest shares (mime encodes each once)."""
        try:
            return self._html_parts(template, context)
        except KeyError:  # the numbers were reset under this render (_Registry): once more
            return self._html_parts(template, context)

    def _html_parts(self, template: str, context: Mapping[str, Any]) -> list[str]:
        rec = _Recorder()
        raw = self._env.get_template(f"{template}/body.html").render(
            {**context, "_nl_recorder": rec})
        first, last = raw.find(_F), raw.rfind(_F)
        if first < 0:
            shell, pieces = raw, []
        else:
            shell = raw[:first] + _REGION + raw[last + 1:]
            # [F, n, ws, n, ws, …, n, F] → fragment or group numbers and the text between.
            pieces = raw[first + 1:last].split(_F)
        if any(not between.isspace() and between for between in pieces[1::2]):
            # Markup between fragments would not be inlined: the template is not split cleanly.
            return [self._renderer.inline_css(
                self._env.get_template(f"{template}/body.html").render(dict(context)))]
        key = f"{template}\0"
        numbers = [int(p) for p in pieces[0::2]]
        parts = self.shells.get(shell)
        missing: dict[str, None] = {}
        for number in numbers:
            self._missing(template, key, number, missing)
        if parts is None or missing:
            parts, inlined = self._inline(shell, [f[len(key):] for f in missing])
            self.shells.put(shell, parts)
            for raw_f, out_f in zip(missing, inlined, strict=True):
                self.fragments.put(raw_f, Inlined(out_f))
        region: list[str] = []
        for k, piece in enumerate(pieces):
            if k % 2 == 0:
                region.append(self._inlined(shell, template, key, int(piece)))
            else:
                region.append(piece)  # whitespace between fragments, kept as in the template
        out: list[str] = []
        for k, part in enumerate(parts):
            if k % 2:
                out.append(self._as_lxml_text(rec.slots[int(part)]))
            elif type(part) is tuple:
                out += (part[0], *region, part[1])
            else:
                out.append(part)
        return out

    def _missing(self, template: str, key: str, number: int, into: dict[str, None]) -> None:
        """The fragments under ``number`` not inlined yet (a joined group needs none)."""
        node = self.registry.nodes[number]
        if isinstance(node, str):
            if key + node not in self.fragments:
                into[key + node] = None
        elif (template, number) not in self.groups:
            for member in node[0::2]:
                self._missing(template, key, member, into)

    def _inlined(self, shell: str, template: str, key: str, number: int) -> str:
        node = self.registry.nodes[number]
        if isinstance(node, str):
            return self.fragments.get(key + node) or self._inline(shell, [node])[1][0]
        joined = self.groups.get((template, number))
        if joined is None:
            joined = self.groups.put((template, number), Inlined("".join(
                self._inlined(shell, template, key, m) if k % 2 == 0 else m
                for k, m in enumerate(node))))
        return joined

    def text_pieces(self, text: str, groups: list[str]) -> list[str]:
        """``text`` cut around each group's lines as the whole text shows them, those being
        the same Inlined objects in every digest (mime encodes them once). The cut is
        checked, not assumed: a group not found as whole lines is simply left in the text."""
        pieces: list[str] = []
        at = 0
        for raw in groups:
            lines = self._text_lines_of(raw)
            found = text.find(lines, at) if lines else -1
            if found < 0 or (found and text[found - 1] != "\n"):
                continue
            pieces += (text[at:found], lines)
            at = found + len(lines)
        pieces.append(text[at:])
        return [p for p in pieces if p]

    def _text_lines_of(self, raw: str) -> str:
        out = self.text_lines.get(raw)
        if out is None:
            lines = self._renderer.text_lines(raw)
            out = self.text_lines.put(raw, Inlined(lines) if lines.strip() else "")
        return out
