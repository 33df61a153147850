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
over the whole document: tests/test_equivalence.py checks that on sample digests.
Without the filters (whole-document mode) the templates render exactly as before.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
import lxml.html
from markupsafe import Markup

from newsletter.mail import mime, rendering

# Fragment boundary in the Jinja output: no printed value holds a C0 control character
# (rendering._finalize strips them), so only _fragment writes one.
_F = "\x01"
_REGION = "<!--nl-fragments-->"  # data is escaped: "<!--" in it is "&lt;!--"
_SENTINEL = "<!--nl-f-->"
# Slot markers carry the process's secret (rendering.MARK) like placeholders, so a title
# that says "__nls_0__" is only a title.
_SLOT_MARK = rendering.MARK + "slot"
_SLOT = re.compile(re.escape(_SLOT_MARK) + r"(\d+)__")

# Bounded: articles of the last weeks, sections and a few shells (a few MB per process).
_FRAGMENT_CACHE = 4096
_SHELL_CACHE = 64
_PIECE_CACHE = 8192  # Jinja output of keyed pieces: ~2 kB each, HTML and text
_fragments: OrderedDict[str, str] = OrderedDict()
_shells: OrderedDict[str, list[str]] = OrderedDict()
_pieces: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_by_identity: OrderedDict[tuple[Any, ...], tuple[Any, str]] = OrderedDict()
_GROUP_CACHE = 2048  # inlined sections (a topic's stories in a week): ~10-40 kB each
_groups: OrderedDict[tuple[str, int], str] = OrderedDict()
_lock = threading.Lock()


class Inlined(mime.Shared):
    """An inlined fragment (an article, a heading): the same object in every digest that
    carries it, so what is built from it (its encoded form) can be shared too: mime encodes
    it once per process, found by this very object (its hash computed once)."""

    __slots__ = ()


class _Recorder:
    def __init__(self) -> None:
        self.slots: list[str] = []


@jinja2.pass_context
def _fragment(ctx: jinja2.runtime.Context, value: str) -> Markup:
    if ctx.get("_nl_recorder") is None:
        return Markup(value)
    return Markup(f"{_F}{_register(str(value))}{_F}")


# Fragments and groups by number, the number being what a marker in Jinja output holds.
# Numbers are process-wide, not per render, so a partial's output with markers in it can be
# cached and reused by every digest. A fragment is its raw HTML; a group, the tuple
# (number, whitespace, number, …) of what it is made of.
_REGISTRY_MAX = 200_000  # an edition's articles, headlines and sections, many times over
_numbers: dict[str | tuple[Any, ...], int] = {}
_registered: dict[int, str | tuple[Any, ...]] = {}
_next_number = itertools.count()
_GROUPING = object()  # the recorder of a partial's own render: it keeps no slots


def _register(node: str | tuple[Any, ...]) -> int:
    number = _numbers.get(node)
    if number is not None:
        return number
    with _lock:
        if len(_registered) >= _REGISTRY_MAX:
            # Cached outputs hold the old numbers: they go with them. Numbers are never
            # reused, so a render that still holds one fails (KeyError) and is redone,
            # instead of showing another fragment.
            _numbers.clear()
            _registered.clear()
            _pieces.clear()
            _by_identity.clear()
            _groups.clear()
        number = _numbers.get(node)
        if number is None:
            number = _numbers[node] = next(_next_number)
            _registered[number] = node
    return number


def _frozen(value: Any) -> Any:
    # Template values are dicts, lists and scalars; as a tuple they can key a cache.
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _rendered_once(where: tuple[str, ...], value: Any, render: Callable[[], Any]) -> str:
    """The output of ``render`` for ``value`` at ``where``, rendered once per process.

    Digests share their article dicts (content._article_item), so the same object comes back
    thousands of times: found by identity first (the cache holds it, so its id stays its
    own), then by content for dicts built afresh (previews, tests).
    """
    seen = _by_identity.get((*where, id(value)))
    if seen is not None and seen[0] is value:
        return seen[1]
    key = (*where, _frozen(value))
    out = _pieces.get(key)
    if out is None:
        out = str(render())
        _store(_pieces, key, out, _PIECE_CACHE)
    _store(_by_identity, (*where, id(value)), (value, out), _PIECE_CACHE)
    return out


@jinja2.pass_context
def _piece(ctx: jinja2.runtime.Context, name: str, value: Any,
           caller: jinja2.runtime.Macro) -> Markup:
    out = _rendered_once((ctx.name or "", name), value, caller)
    return _fragment(ctx, out) if (ctx.name or "").endswith(".html") else Markup(out)


@jinja2.pass_context
def _partial(ctx: jinja2.runtime.Context, template: str, /, **values: Any) -> Markup:
    """``{{ partial("_base/article.html", article=article) }}``: the partial rendered with
    these values alone, once per process for each distinct first value (like a piece,
    without a call block's cost: this runs for every article of every digest). The other
    values must be scalars (``lead_stories=5``).

    A leaf partial (an article) is one fragment. A partial whose own output is made of
    fragments (a topic's section of articles) renders them as markers and becomes one
    *group*: a digest then costs a lookup per section, and its inlined HTML is joined
    once per process and shared by every digest that carries the section.
    """
    (_, value), *rest = values.items()
    rec = ctx.get("_nl_recorder")
    text_groups = ctx.get("_nl_text_groups")
    where = (template, rec is not None, *rest)

    def render() -> str:
        out = rendering._env.get_template(template).render(
            {**values, "_nl_recorder": _GROUPING} if rec is not None else values)
        return _group(out) if rec is not None and _F in out else out
    out = _rendered_once(where, value, render)
    if text_groups is not None:
        text_groups.append(out)
    if rec is None or not template.endswith(".html") or _F in out:
        return Markup(out)
    return _fragment(ctx, out)


def _group(out: str) -> str:
    """A partial's output made of fragments, as one marker (the whitespace around it kept)."""
    first, last = out.find(_F), out.rfind(_F)
    pieces = out[first + 1:last].split(_F)
    if any(not between.isspace() and between for between in pieces[1::2]):
        raise ValueError("a partial made of fragments has markup between them: "
                         "wrap every part of it in a fragment")
    members = tuple(int(p) if k % 2 == 0 else p for k, p in enumerate(pieces))
    return f"{out[:first]}{_F}{_register(members)}{_F}{out[last + 1:]}"


@jinja2.pass_context
def _slot(ctx: jinja2.runtime.Context, value: str) -> Markup:
    rec = ctx.get("_nl_recorder")
    if rec is None:
        return Markup(value)
    rec.slots.append(str(value))
    return Markup(f"{_SLOT_MARK}{len(rec.slots) - 1}__")


rendering._env.filters["fragment"] = _fragment
rendering._env.filters["slot"] = _slot
rendering._env.globals["piece"] = _piece
rendering._env.globals["partial"] = _partial


@functools.lru_cache(maxsize=4096)  # an edition's titles and topic lists recur
def _as_lxml_text(html_text: str) -> str:
    """Text (with entities) as lxml writes it after parsing: what premailer would output."""
    if not any(c in html_text for c in "&<>"):
        return html_text
    p = lxml.html.fragment_fromstring(f"<p>{html_text}</p>")
    out = lxml.html.tostring(p, encoding="unicode", method="html")
    return out[3:-4]


def _cached(cache: OrderedDict, key: str, size: int) -> Any:
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
    return hit


def _store(cache: OrderedDict, key: str, value: Any, size: int) -> None:
    with _lock:
        cache[key] = value
        if len(cache) > size:
            cache.popitem(last=False)


def _inline(shell: str, fragments: list[str]) -> tuple[list[str], list[str]]:
    """One premailer run: the shell with ``fragments`` in its region, split back apart."""
    doc = shell.replace(_REGION, _SENTINEL + _SENTINEL.join(fragments) + _SENTINEL, 1) \
        if fragments else shell
    out = rendering._inline_css(doc)
    if not fragments:
        return _shell_parts(out), []
    parts = out.split(_SENTINEL)
    if len(parts) != len(fragments) + 2:
        raise RuntimeError("premailer lost a fragment sentinel")
    return _shell_parts(parts[0] + _REGION + parts[-1]), parts[1:-1]


def _shell_parts(inlined: str) -> list[Any]:
    # [literal, slot index, literal, …] found once per shell; the literal holding the region
    # as (before, after). Literals are Inlined: the same objects in every digest of the shell.
    parts: list[Any] = _SLOT.split(inlined)
    for k in range(0, len(parts), 2):
        if _REGION in parts[k]:
            before, after = parts[k].split(_REGION, 1)
            parts[k] = (Inlined(before), Inlined(after))
        else:
            parts[k] = Inlined(parts[k])
    return parts


def render_html(template: str, context: Mapping[str, Any]) -> str:
    """The inlined HTML of ``email_templates/<template>/body.html``, built from fragments."""
    return "".join(render_html_parts(template, context))


def render_html_parts(template: str, context: Mapping[str, Any]) -> list[str]:
    """:func:`render_html` in the pieces it is joined from: the inlined fragments and groups
    among them are the very string objects every digest shares (mime encodes each once)."""
    try:
        return _render_html_parts(template, context)
    except KeyError:  # the numbers were reset under this render (see _register): once more
        return _render_html_parts(template, context)


def _render_html_parts(template: str, context: Mapping[str, Any]) -> list[str]:
    rec = _Recorder()
    raw = rendering._env.get_template(f"{template}/body.html").render(
        {**context, "_nl_recorder": rec})
    first, last = raw.find(_F), raw.rfind(_F)
    if first < 0:
        shell, pieces = raw, []
    else:
        shell = raw[:first] + _REGION + raw[last + 1:]
        # [F, n, ws, n, ws, …, n, F] → fragment or group numbers and the text between them.
        pieces = raw[first + 1:last].split(_F)
    if any(not between.isspace() and between for between in pieces[1::2]):
        # Markup between fragments would not be inlined: the template is not split cleanly.
        return [rendering._inline_css(rendering._env.get_template(f"{template}/body.html")
                                      .render(dict(context)))]
    key = f"{template}\0"
    numbers = [int(p) for p in pieces[0::2]]
    parts = _cached(_shells, shell, _SHELL_CACHE)
    missing: dict[str, None] = {}
    for number in numbers:
        _missing(template, key, number, missing)
    if parts is None or missing:
        parts, inlined = _inline(shell, [f[len(key):] for f in missing])
        _store(_shells, shell, parts, _SHELL_CACHE)
        for raw_f, out_f in zip(missing, inlined, strict=True):
            _store(_fragments, raw_f, Inlined(out_f), _FRAGMENT_CACHE)
    region: list[str] = []
    for k, piece in enumerate(pieces):
        if k % 2 == 0:
            region.append(_inlined(shell, template, key, int(piece)))
        else:
            region.append(piece)  # whitespace between fragments, kept as in the template
    out: list[str] = []
    for k, part in enumerate(parts):
        if k % 2:
            out.append(_as_lxml_text(rec.slots[int(part)]))
        elif type(part) is tuple:
            out += (part[0], *region, part[1])
        else:
            out.append(part)
    return out


def _missing(template: str, key: str, number: int, into: dict[str, None]) -> None:
    """The fragments under ``number`` not inlined yet (a joined group needs none)."""
    node = _registered[number]
    if isinstance(node, str):
        if key + node not in _fragments:
            into[key + node] = None
    elif (template, number) not in _groups:
        for member in node[0::2]:
            _missing(template, key, member, into)


def _inlined(shell: str, template: str, key: str, number: int) -> str:
    node = _registered[number]
    if isinstance(node, str):
        return _fragments.get(key + node) or _inline(shell, [node])[1][0]
    joined = _cached(_groups, (template, number), _GROUP_CACHE)
    if joined is None:
        joined = Inlined("".join(
            _inlined(shell, template, key, m) if k % 2 == 0 else m for k, m in enumerate(node)))
        _store(_groups, (template, number), joined, _GROUP_CACHE)
    return joined


def render(template: str, context: Mapping[str, Any]) -> rendering.RenderedEmail:
    """Like :func:`rendering.render`, with premailer per fragment and per shell."""
    groups: list[str] = []  # the text partials the body used directly (a digest's topics)
    subject, text = rendering.render_text_parts(template, {**context, "_nl_text_groups": groups})
    parts = render_html_parts(template, context)
    rendered = rendering.RenderedEmail(subject=subject, text=text, html="".join(parts))
    object.__setattr__(rendered, "_html_parts", parts)
    object.__setattr__(rendered, "_text_parts", _text_pieces(text, groups))
    return rendered


def _text_pieces(text: str, groups: list[str]) -> list[str]:
    """``text`` cut around each group's lines as the whole text shows them, those being the
    same Inlined objects in every digest (mime encodes them once). The cut is checked, not
    assumed: a group not found as whole lines is simply left in the text."""
    pieces: list[str] = []
    at = 0
    for raw in groups:
        lines = _text_lines_of(raw)
        found = text.find(lines, at) if lines else -1
        if found < 0 or (found and text[found - 1] != "\n"):
            continue
        pieces += (text[at:found], lines)
        at = found + len(lines)
    pieces.append(text[at:])
    return [p for p in pieces if p]


@functools.lru_cache(maxsize=4096)  # a digest's topics, as every combination splits them
def _text_lines_of(raw: str) -> str:
    lines = rendering._text_lines(raw)
    return Inlined(lines) if lines.strip() else ""
