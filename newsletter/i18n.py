"""The reader's language: which one a page or an email is shown in, its catalogue, its
direction, and dates and numbers written its way.

A *locale* here is one of the site's LANGUAGES ("en", "ar"), always; whatever a browser,
a link or a stored row says is mapped onto one by :func:`usable` (``ar-JO`` is ``ar``)
or falls back to LANGUAGE. Translations are gettext catalogues compiled by pybabel into
``newsletter/locale/<lang>/LC_MESSAGES/messages.mo`` (docs/operations.md, "Adding a
language"); English is the language every string is written in, so its catalogue may be
empty.

Templates never hold global language state: :func:`install` gives a Jinja environment
``{% trans %}``, ``_()``, ``gettext``, ``ngettext`` and the formatting filters, each reading
the ``locale`` variable of the render it is called from. Two renders in two languages
may run at once on one environment.
"""

from __future__ import annotations

import gettext as _gettext
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

import babel
import babel.dates
import babel.lists
import babel.numbers
import babel.units
import jinja2
from babel.support import Translations
from markupsafe import Markup, escape

from newsletter.config import N_, get_settings

__all__ = [
    "CONTEXT_NAME",
    "DOMAIN",
    "LOCALE_DIR",
    "N_",
    "Later",
    "accept_language",
    "bidi_lines",
    "direction",
    "format_date",
    "format_datetime",
    "format_list",
    "format_minutes",
    "format_number",
    "install",
    "language_name",
    "languages",
    "later",
    "locale_of",
    "negotiate",
    "resolve",
    "site_language",
    "translate",
    "translate_plural",
    "translations",
    "usable",
    "without_catalogue",
]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
# A render's language is this variable of its context.
CONTEXT_NAME = "locale"
# The Accept-Language entries read: a real browser sends a handful; a header of thousands
# is somebody else's test and must not cost us a parse of each.
_ACCEPT_ENTRIES = 16
_ACCEPT_ITEM = re.compile(r"^\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)\s*"
                          r"(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")


def languages() -> tuple[str, ...]:
    """The languages reader pages and emails may be shown in (LANGUAGES), site's first."""
    return tuple(get_settings().languages)


def site_language() -> str:
    """LANGUAGE: the fallback of every choice of language."""
    return get_settings().language


def usable(tag: str | None) -> str | None:
    """The shipped language a BCP 47 tag asks for, or None: ``ar-JO`` and ``ar_jo`` are
    ``ar``; ``pt-BR`` is ``pt-br`` if that is shipped, else ``pt``."""
    if not tag:
        return None
    return _usable(tag, languages())


# Every template render asks (its locale, through locale_of): a few distinct tags a process.
@lru_cache(maxsize=256)
def _usable(tag: str, shipped: tuple[str, ...]) -> str | None:
    parts = tag.strip().replace("_", "-").lower().split("-")
    while parts:
        candidate = "-".join(parts)
        if candidate in shipped:
            return candidate
        parts.pop()
    return None


def accept_language(header: str | None) -> list[str]:
    """The tags of an Accept-Language header, most wanted first (q=0 and "*" left out);
    entries that are not language tags are skipped."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(header.split(",")[:_ACCEPT_ENTRIES]):
        m = _ACCEPT_ITEM.match(item)
        if m is None or m.group(1) == "*":
            continue
        q = float(m.group(2)) if m.group(2) else 1.0
        if q > 0:
            ranked.append((-q, i, m.group(1)))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(query_lang: str | None, accept_language_header: str | None) -> str:
    """The language of a reader page: ``?lang=`` if it names a shipped one, else the first
    shipped one the browser asks for, else LANGUAGE."""
    chosen = usable(query_lang)
    if chosen:
        return chosen
    for tag in accept_language(accept_language_header):
        chosen = usable(tag)
        if chosen:
            return chosen
    return site_language()


def locale_of(stored: str | None) -> str:
    """A stored language (a reader's ``locale``) as one shown now: a language the site no
    longer lists falls back to LANGUAGE, and None (readers from before) likewise."""
    return usable(stored) or site_language()


# Babel parses a locale afresh on every call (tens of µs): a digest formats a number and a
# date or two per render, 40,000 renders an edition at 100,000 readers.
@lru_cache(maxsize=64)
def _babel_locale(locale: str) -> babel.Locale:
    return babel.Locale.parse(locale, sep="-")


def without_catalogue(tags: list[str]) -> list[str]:
    """The languages of ``tags`` with no compiled catalogue: shown, they would be English
    under another name (preflight refuses to start with one)."""
    return [tag for tag in tags if not (LOCALE_DIR / str(_babel_locale(tag)) / "LC_MESSAGES"
                                        / f"{DOMAIN}.mo").is_file()]


@lru_cache(maxsize=32)
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalogue of a language, loaded once per process (English's may be
    absent: its strings are the message ids themselves)."""
    ident = str(_babel_locale(locale))
    loaded = Translations.load(str(LOCALE_DIR), [ident], DOMAIN)
    return loaded


def translate(locale: str, message: str, **variables: Any) -> str:
    """``message`` in ``locale``, with ``%(name)s`` filled from ``variables`` if given."""
    out = translations(locale).gettext(message)
    return out % variables if variables else out


def translate_plural(locale: str, singular: str, plural: str, n: int, **variables: Any) -> str:
    """The form of ``singular``/``plural`` for ``n`` in ``locale`` (Arabic has six);
    ``%(num)s`` is ``n`` written the locale's way."""
    out = translations(locale).ngettext(singular, plural, n)
    return out % {"num": format_number(n, locale), **variables}


@dataclass(frozen=True)
class Later:
    """A message with values, translated when the reader's language is known (a page's
    heading built before the page picks its language): ``later("Sent to %(email)s",
    email=...)``; :func:`resolve` translates it, then puts the values in."""

    message: str
    variables: tuple[tuple[str, Any], ...] = ()


def later(message: str, **variables: Any) -> Later:
    return Later(message, tuple(variables.items()))


def resolve(locale: str, text: str | Later) -> str:
    """A message for a reader in ``locale``: a Later translated and filled, a str
    translated if the catalogue has it (text that is not a message id is shown as is)."""
    if isinstance(text, Later):
        return translate(locale, text.message, **dict(text.variables))
    return translations(locale).gettext(text) if text else text


@lru_cache(maxsize=32)
def direction(locale: str) -> str:
    """"rtl" or "ltr": how the language's script runs (Arabic, Hebrew, Persian: right to left)."""
    order = _babel_locale(locale).character_order
    return "rtl" if order == "right-to-left" else "ltr"


@lru_cache(maxsize=32)
def language_name(locale: str) -> str:
    """The language's name in itself ("العربية", "English"), for the language switcher."""
    name = _babel_locale(locale).get_display_name(_babel_locale(locale)) or locale
    return name[:1].upper() + name[1:]


def format_date(value: date | datetime | None, locale: str, fmt: str = "long",
                tz: str | tzinfo | None = None) -> str:
    """A day written the locale's way ("8 December 2026", "٨ ديسمبر ٢٠٢٦"); an instant is
    first put in ``tz`` (default TIMEZONE)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(_zone(tz)).date() if value.tzinfo \
            else value.date()
    return babel.dates.format_date(value, fmt, locale=_babel_locale(locale))


def format_datetime(value: datetime | str | None, locale: str, fmt: str = "medium",
                    tz: str | tzinfo | None = None) -> str:
    """An instant written the locale's way in ``tz`` (default TIMEZONE), to the minute:
    the ``fmt`` date ("short", "medium", "long") and the short time, joined as the language
    joins them ("Dec 8, 2026, 5:00 AM", "08‏/12‏/2026، 5:00 ص"). Naive is UTC."""
    if not value:
        return ""
    if isinstance(value, str):  # ISO text, as reports and receipts give it
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    here, where = value.astimezone(_zone(tz)), _babel_locale(locale)
    day = babel.dates.format_date(here.date(), fmt, locale=where)
    time = babel.dates.format_time(here, "short", locale=where)
    return babel.dates.get_datetime_format(fmt, locale=where).replace(
        "{1}", day).replace("{0}", time)


@lru_cache(maxsize=1024)  # story counts and the like: a few hundred distinct per process
def format_number(value: int | float, locale: str) -> str:
    """A number with the locale's digits and separators ("1,234", "١٬٢٣٤")."""
    return babel.numbers.format_decimal(value, locale=_babel_locale(locale))


def format_minutes(minutes: float, locale: str) -> str:
    """A duration in whole hours or minutes, in words ("1 hour", "ساعة", "90 minutes")."""
    unit, value = ("duration-minute", minutes) if minutes % 60 else ("duration-hour", minutes / 60)
    return babel.units.format_unit(_whole(value), unit, locale=_babel_locale(locale))


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None or isinstance(tz, str):
        return babel.dates.get_timezone(tz or get_settings().timezone)
    return tz


# --- Jinja -----------------------------------------------------------------------------------

def _render_locale(ctx: jinja2.runtime.Context) -> str:
    return locale_of(ctx.get(CONTEXT_NAME))


@jinja2.pass_context
def _j_gettext(ctx: jinja2.runtime.Context, message: str, /, **variables: Any) -> str:
    # Jinja's "newstyle" gettext: the template's own variables go in after translation,
    # escaped when the template autoescapes (a translator's markup is ours, theirs is not).
    out: str = translations(_render_locale(ctx)).gettext(message)
    if ctx.eval_ctx.autoescape:
        out = Markup(out)
    return out % variables


@jinja2.pass_context
def _j_tr(ctx: jinja2.runtime.Context, text: Any) -> str:
    # For a message id held in a variable (a label from Python, the consent text): it is
    # translated like _() but stays text, escaped when printed; _() trusts its result as
    # markup, which is right only for strings written in the template.
    return translations(_render_locale(ctx)).gettext(str(text)) if text else ""


@jinja2.pass_context
def _j_ngettext(ctx: jinja2.runtime.Context, singular: str, plural: str, n: int, /,
                **variables: Any) -> str:
    locale = _render_locale(ctx)
    out: str = translations(locale).ngettext(singular, plural, n)
    if ctx.eval_ctx.autoescape:
        out = Markup(out)
    variables.setdefault("num", format_number(n, locale))
    return out % variables


@jinja2.pass_context
def _j_pgettext(ctx: jinja2.runtime.Context, context: str, message: str, /,
                **variables: Any) -> str:
    out: str = translations(_render_locale(ctx)).pgettext(context, message)
    if ctx.eval_ctx.autoescape:
        out = Markup(out)
    return out % variables


@jinja2.pass_context
def _j_date(ctx: jinja2.runtime.Context, value: Any, fmt: str = "long") -> str:
    return format_date(value, _render_locale(ctx), fmt)


@jinja2.pass_context
def _j_datetime(ctx: jinja2.runtime.Context, value: Any, fmt: str = "medium") -> str:
    return format_datetime(value, _render_locale(ctx), fmt)


@jinja2.pass_context
def _j_number(ctx: jinja2.runtime.Context, value: Any) -> str:
    return format_number(value, _render_locale(ctx))


@jinja2.pass_context
def _j_language(ctx: jinja2.runtime.Context) -> str:
    return _render_locale(ctx)


def format_list(items: list[str], locale: str) -> str:
    """Names joined as the language joins them ("Syria, Iraq and Iran", "سوريا والعراق وإيران")."""
    return babel.lists.format_list([str(i) for i in items], locale=_babel_locale(locale)) \
        if items else ""


@jinja2.pass_context
def _j_join_list(ctx: jinja2.runtime.Context, items: Any) -> str:
    # In HTML each name is isolated (<bdi>): an English topic inside an Arabic sentence
    # keeps its own order, and so do the commas around it.
    items = list(items)
    if not ctx.eval_ctx.autoescape:
        return format_list(items, _render_locale(ctx))
    marked = [f"\x00{i}\x01" for i in range(len(items))]
    out = str(escape(format_list(marked, _render_locale(ctx))))
    for i, item in enumerate(items):
        out = out.replace(f"\x00{i}\x01", f"<bdi>{escape(item)}</bdi>")
    return Markup(out)


@jinja2.pass_context
def _j_direction(ctx: jinja2.runtime.Context) -> str:
    return direction(_render_locale(ctx))


@jinja2.pass_context
def _j_align(ctx: jinja2.runtime.Context, end: bool = False) -> str:
    # For align="" on table cells (email clients that ignore CSS direction): the side the
    # text starts on, or with end=True the other.
    start = "right" if direction(_render_locale(ctx)) == "rtl" else "left"
    return ({"right": "left", "left": "right"}[start]) if end else start


_RLM, _LRM = "\u200f", "\u200e"


def _first_strong(line: str) -> str | None:
    for ch in line:
        kind = unicodedata.bidirectional(ch)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return None


def bidi_lines(text: str, locale: str) -> str:
    """Plain text that reads in ``locale``'s direction: a line whose first letter runs the
    other way (an English site name opening an Arabic line; an Arabic topic opening an
    English one) starts with a right-to-left or left-to-right mark, so a mail client that
    sets each line's direction by its first letter (Unicode's rule) aligns and orders it as
    the language does. Lines of one word (a link, an address) are left alone: a mark in
    a link would travel with it when copied."""
    want = direction(locale)
    mark = _RLM if want == "rtl" else _LRM
    out = []
    for line in text.split("\n"):
        body = line.strip()
        if " " in body and _first_strong(body) not in (want, None):
            line = line[:len(line) - len(line.lstrip())] + mark + line.lstrip()
        out.append(line)
    return "\n".join(out)


@jinja2.pass_context
def _j_bidi_lines(ctx: jinja2.runtime.Context, text: str) -> str:
    return bidi_lines(str(text), _render_locale(ctx))


def install(env: jinja2.Environment) -> None:
    """Give ``env`` the i18n extension and the per-render language functions.

    In templates: ``{% trans %}Hello {{ name }}{% endtrans %}``, ``{{ _("Sign up") }}``,
    ``{{ tr(label) }}`` (a message id in a variable: translated, and escaped as text),
    ``{{ ngettext("%(num)s story", "%(num)s stories", n) }}``, ``{{ when | date }}``,
    ``{{ when | datetime }}``, ``{{ n | number }}``, ``{{ language() }}`` (for ``lang=``),
    ``{{ text_direction() }}`` ("rtl" or "ltr") and ``{{ align() }}`` /
    ``{{ align(end=True) }}`` ("right"/"left" for ``align=``), and for plain text
    ``{% filter bidi_lines %}…{% endfilter %}`` (:func:`bidi_lines`); ``{{ names | join_list }}``
    joins names the language's way (each in <bdi> in HTML). Each reads the render's
    ``locale`` variable (LANGUAGE when it is missing, so a template under StrictUndefined
    prints ``language()``, not ``locale``).
    """
    env.add_extension("jinja2.ext.i18n")
    env.newstyle_gettext = True  # type: ignore[attr-defined]
    env.globals.update(gettext=_j_gettext, _=_j_gettext, tr=_j_tr, ngettext=_j_ngettext,
                       pgettext=_j_pgettext, language=_j_language,
                       text_direction=_j_direction, align=_j_align,
                       language_name=language_name)
    env.filters.update(date=_j_date, datetime=_j_datetime, number=_j_number,
                       bidi_lines=_j_bidi_lines, join_list=_j_join_list)
