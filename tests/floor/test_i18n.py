"""The language machinery (newsletter/i18n.py): negotiation, catalogues, direction, per-locale
formatting, and that what is committed under newsletter/locale/ is what the sources make."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from pydantic import ValidationError

from newsletter import i18n
from newsletter.config import Settings, reload_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _defaults(monkeypatch):
    monkeypatch.delenv("NEWSLETTER_LANGUAGES", raising=False)
    monkeypatch.delenv("NEWSLETTER_LANGUAGE", raising=False)
    reload_settings()
    yield
    reload_settings()


# ---------------------------------------------------------------- negotiation

def test_the_defaults_ship_english_and_arabic_english_first():
    assert i18n.languages() == ("en", "ar")
    assert i18n.site_language() == "en"


@pytest.mark.parametrize(("query", "header", "expected"), [
    ("ar", None, "ar"),
    ("ar", "en", "ar"),                      # ?lang= wins over the browser
    ("AR-jo", None, "ar"),                   # BCP 47: a region maps to its language
    ("ar_EG", None, "ar"),
    ("fr", "ar", "ar"),                      # a language we do not ship is no choice
    (None, "ar-JO,ar;q=0.9,en;q=0.8", "ar"),
    (None, "fr-FR, fr;q=0.9, ar;q=0.8, en;q=0.7", "ar"),  # first shipped in q order
    (None, "en;q=0.5, ar;q=0.9", "ar"),
    (None, "ar;q=0, en;q=0.2", "en"),        # q=0: "not this one"
    (None, "de, fr", "en"),                  # nothing shipped: LANGUAGE
    (None, "*", "en"),
    (None, "", "en"),
    (None, None, "en"),
    (None, "ar;q=abc, <script>", "en"),      # garbage is skipped, not an error
    ("../../etc", "x" * 5000, "en"),
])
def test_negotiate(query, header, expected):
    assert i18n.negotiate(query, header) == expected


def test_accept_language_reads_only_its_first_entries():
    header = ",".join(["xx"] * 100 + ["ar"])
    assert i18n.negotiate(None, header) == "en"


def test_only_the_listed_languages_are_chosen(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_LANGUAGES", "ar")
    monkeypatch.setenv("NEWSLETTER_LANGUAGE", "ar")
    reload_settings()
    assert i18n.negotiate("en", "en") == "ar"
    assert i18n.locale_of("en") == "ar"  # a reader's stored language the site dropped


def test_a_stored_language_reads_as_itself_or_the_site_default():
    assert i18n.locale_of("ar") == "ar"
    assert i18n.locale_of(None) == "en"
    assert i18n.locale_of("fr") == "en"


def test_settings_refuse_a_default_outside_the_list_and_non_tags():
    with pytest.raises(ValidationError, match="not one of LANGUAGES"):
        Settings(languages=["en"], language="ar")
    with pytest.raises(ValidationError, match="not a language tag"):
        Settings(languages=["en", "ar;drop"])
    assert Settings(languages="EN, ar_JO").languages == ["en", "ar-jo"]


# ---------------------------------------------------------------- catalogues, direction, formats

def test_arabic_is_translated_and_right_to_left():
    assert i18n.translate("ar", "Sign up") == "اشترك"
    assert i18n.translate("en", "Sign up") == "Sign up"
    assert i18n.direction("ar") == "rtl"
    assert i18n.direction("en") == "ltr"
    assert i18n.language_name("ar") == "العربية"


def test_arabic_plurals_take_their_six_forms():
    one = "We no longer send stories on this topic; saving this page removes it from your choices."
    other = ("We no longer send stories on these topics; saving this page removes them from "
             "your choices.")
    assert "هذا الموضوع" in i18n.translate_plural("ar", one, other, 1)
    assert "هذين الموضوعين" in i18n.translate_plural("ar", one, other, 2)  # the dual
    assert "هذه المواضيع" in i18n.translate_plural("ar", one, other, 5)
    assert i18n.translate_plural("en", one, other, 2) == other


def test_dates_and_numbers_are_written_per_locale():
    when = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)
    assert i18n.format_date(when, "en") == "December 8, 2026"
    assert i18n.format_date(when, "ar") == "8 ديسمبر 2026"
    # The day is the site's (TIMEZONE), or the one asked for.
    assert i18n.format_date(when, "en", tz="Asia/Amman") == "December 9, 2026"
    assert i18n.format_number(1234567, "en") == "1,234,567"
    # CLDR's Arabic writes Western digits (as most Arab news sites do); the strings of our
    # catalogue do the same, so a page never mixes the two.
    assert i18n.format_number(1234567, "ar") == "1,234,567"
    # An instant to the minute, in the site's zone or the one asked for; naive is UTC.
    assert i18n.format_datetime(datetime(2026, 12, 8, 5, 7, tzinfo=UTC), "en") == \
        "Dec 8, 2026, 5:07\u202fAM"  # CLDR: a narrow no-break space before AM
    assert i18n.format_datetime("2026-12-08T05:07:00", "ar", "long", tz="Asia/Amman") == \
        "8 ديسمبر 2026، 8:07 ص"
    assert i18n.format_date(None, "ar") == ""


# ---------------------------------------------------------------- Jinja, one render per locale

def _env() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, loader=jinja2.DictLoader({
        "t.html": "<p dir='{{ text_direction() }}' align='{{ align() }}'>"
                  "{% trans %}Sign up{% endtrans %} {{ _('Unsubscribe') }} {{ n | number }}"
                  " {% trans email=email %}This email was sent to <bdi>{{ email }}</bdi>."
                  "{% endtrans %}</p>"}))
    i18n.install(env)
    return env


def test_a_template_renders_in_the_locale_of_its_context_and_escapes_values():
    t = _env().get_template("t.html")
    ar = t.render(locale="ar", n=1000, email="<b>x@example.com</b>")
    assert "dir='rtl' align='right'" in ar
    assert "اشترك إلغاء الاشتراك" in ar
    assert "أُرسلت هذه الرسالة إلى <bdi>&lt;b&gt;x@example.com&lt;/b&gt;</bdi>." in ar
    en = t.render(locale="en", n=1000, email="x@example.com")
    assert "dir='ltr' align='left'" in en and "Sign up Unsubscribe 1,000" in en
    assert "Sign up" in t.render(n=1, email="")  # no locale: LANGUAGE


def test_two_locales_render_at_once_on_one_environment_without_mixing():
    t = _env().get_template("t.html")
    wrong: list[str] = []

    def run(locale: str, word: str) -> None:
        for _ in range(300):
            out = t.render(locale=locale, n=1, email="a@b.example")
            if word not in out:
                wrong.append(out)

    threads = [threading.Thread(target=run, args=("ar", "اشترك")),
               threading.Thread(target=run, args=("en", "Sign up"))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wrong == []


# ---------------------------------------------------------------- the committed catalogues

def test_the_compiled_catalogues_are_those_of_the_po_files():
    """A .po edited without `pybabel compile` fails here (docs/operations.md)."""
    for lang in ("en", "ar"):
        folder = i18n.LOCALE_DIR / lang / "LC_MESSAGES"
        with open(folder / "messages.po", "rb") as f:
            catalog = read_po(f, locale=lang)
        out = io.BytesIO()
        write_mo(out, catalog)
        assert (folder / "messages.mo").read_bytes() == out.getvalue(), \
            f"{lang}: run pybabel compile -d newsletter/locale"


def test_the_catalogues_hold_every_string_the_sources_mark(tmp_path):
    """A string marked in a template or in Python but not extracted (and, for Arabic, not
    translated) fails here: run the extract and update commands of docs/operations.md."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [str(Path(sys.executable).with_name("pybabel")), "-q", "extract", "-F", "babel.cfg",
         "-k", "N_", "-k", "later", "-k", "translate:2", "-k", "translate_plural:2,3",
         "--ignore-dirs=.* __pycache__", "-o", str(pot), "."],
        cwd=ROOT, check=True)
    with open(pot, "rb") as f:
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    assert len(wanted) > 30
    for lang in ("en", "ar"):
        with open(i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
            catalog = read_po(f, locale=lang)
        held = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
        assert wanted - held.keys() == set(), f"{lang}: not extracted"
        if lang == "ar":
            untranslated = [k for k in wanted if not all(
                held[k].string if isinstance(held[k].string, tuple) else [held[k].string])]
            assert untranslated == [], "Arabic strings missing"


def test_preflight_refuses_a_language_without_a_catalogue():
    from newsletter.cli.preflight import problems

    assert not any("LANGUAGES" in p for p in problems(Settings()))  # the defaults ship
    found = [p for p in problems(Settings(languages=["en", "ar", "tr"])) if "LANGUAGES" in p]
    assert len(found) == 1 and "names tr," in found[0]


def test_tr_translates_a_message_held_in_a_variable_but_escapes_it():
    env = jinja2.Environment(autoescape=True)
    i18n.install(env)
    t = env.from_string("{{ tr(label) }}|{{ _('Sign up') }}")
    assert t.render(locale="ar", label="Daily digest") == "نشرة يومية|اشترك"
    assert t.render(locale="ar", label="<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;|اشترك"
