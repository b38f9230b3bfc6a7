"""Languages: every human-readable text of every template goes through the catalog, every message the
templates use is in both catalogs and translated in zh_Hans, the language is chosen from the switch or
Accept-Language, and money is shown exactly."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from babel.dates import format_date, format_datetime
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

from api.console import i18n
from api.console.render import TEMPLATE_DIR, environment
from ledger.money import MICRO
from tests.api.conftest import Tokens
from tests.console.conftest import log_in

TEMPLATES = sorted(TEMPLATE_DIR.rglob("*.html"))
# Text that needs no translation: punctuation, symbols, digits, and the product's own name.
NEUTRAL = re.compile(r"[\s\x00·•|≥<>=&;:,.()%/+\-0-9]*(gpuledger)?")


def untranslated_text(source: str) -> list[str]:
    """Human-readable text of a template outside {% trans %} and _(...): template data with every tag,
    comment and entity removed, expressions and trans blocks standing as \\x00."""
    out: list[str] = []
    depth = 0
    pending = ""
    opened = False   # inside a {% ... %} whose tag name has not come yet
    for _, kind, value in environment().lex(source):
        if kind == "name" and opened:
            depth += {"trans": 1, "endtrans": -1}.get(value, 0)
        if kind != "whitespace":
            opened = kind == "block_begin"
        if kind == "data" and depth == 0:
            pending += value
        elif kind in ("variable_begin", "block_begin"):
            pending += "\x00"
    text = re.sub(r"<!--.*?-->|<[^>]*>|&[a-z]+;|&#[0-9]+;", " ", pending, flags=re.S)
    for piece in re.split(r"[\x00\n]+", text):
        piece = piece.strip()
        if piece and not NEUTRAL.fullmatch(piece):
            out.append(piece)
    return out


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(TEMPLATE_DIR)))
def test_no_template_text_escapes_translation(template: Path) -> None:
    assert untranslated_text(template.read_text()) == []


def test_the_check_finds_untranslated_text() -> None:
    assert untranslated_text("<p>{% trans %}Fine{% endtrans %} Oops</p><a title=x>{{ _('ok') }}</a>") == ["Oops"]
    assert untranslated_text("<td>{{ x }}</td><td>≥ {{ y }}</td>") == []


def _template_messages() -> set[str]:
    found = extract_from_dir(str(TEMPLATE_DIR.parent), method_map=[("templates/**.html", "jinja2")],
                             options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True",
                                                                "lstrip_blocks": "True"}})
    return {m[2] if isinstance(m[2], str) else m[2][0] for m in found}


def _catalog(language: str) -> dict[str, object]:
    with i18n.po_path(language).open("rb") as f:
        po = read_po(f)
    return {m.id if isinstance(m.id, str) else m.id[0]: m for m in po if m.id}


def test_every_template_message_is_in_both_catalogs_and_translated_in_chinese() -> None:
    used = _template_messages()
    assert len(used) > 50
    for language in i18n.LANGUAGES:
        assert used - set(_catalog(language)) == set(), language
    zh = _catalog("zh_Hans")
    untranslated = [k for k, m in zh.items() if m.fuzzy or not all(  # type: ignore[attr-defined]
        m.string if isinstance(m.string, tuple) else (m.string,))]  # type: ignore[attr-defined]
    assert untranslated == []
    # Placeholders survive translation.
    for key, m in zh.items():
        forms = m.string if isinstance(m.string, tuple) else (m.string,)  # type: ignore[attr-defined]
        assert all(set(re.findall(r"%\(\w+\)s", key)) == set(re.findall(r"%\(\w+\)s", f)) for f in forms), key


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, "", "en"), (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_Hans"), (None, "zh-Hans", "zh_Hans"),
    (None, "en-US,en;q=0.9,zh;q=0.8", "en"), (None, "zh-TW", "en"), (None, "fr, zh;q=0.5", "zh_Hans"),
    ("en", "zh-CN", "en"), ("zh_Hans", "en", "zh_Hans"), ("klingon", "zh", "zh_Hans"), (None, "zh;q=0", "en"),
])
def test_language_choice(cookie: str | None, header: str, expected: str) -> None:
    assert i18n.choose(cookie, header) == expected


def test_money_is_exact_and_dates_are_in_the_configured_zone() -> None:
    en = i18n.Formats("en", "CNY", ZoneInfo("Asia/Shanghai"))
    zh = i18n.Formats("zh_Hans", "CNY", ZoneInfo("Asia/Shanghai"))
    assert en.money(50_000_000) == "CN¥50.00"
    assert en.money(1_234_567_891) == "CN¥1,234.567891"   # every micro-unit shown, none rounded away
    assert en.money(-1) == "-CN¥0.000001"
    assert zh.money(123_450_000) == "¥123.45"
    assert en.number(Decimal("3.600000")) == "3.6"
    t = datetime(2026, 1, 31, 17, 30, tzinfo=UTC)
    assert en.datetime(t) == "Feb 1, 2026, 1:30:00\u202fAM"
    assert zh.datetime(t) == "2026年2月1日 01:30:00"


@settings(max_examples=400, deadline=None)
@given(micro=st.integers(min_value=-(10**18), max_value=10**18),
       places=st.integers(min_value=0, max_value=9), language=st.sampled_from(i18n.LANGUAGES),
       currency=st.sampled_from(("CNY", "USD", "EUR", "JPY")))
def test_the_spelled_out_formats_are_babels(micro: int, places: int, language: str, currency: str) -> None:
    """Formats' own rendering of money and numbers (Babel's patterns read once) is Babel's, digit for digit."""
    fmt = i18n.Formats(language, currency, ZoneInfo("UTC"))
    value = Decimal(micro).scaleb(-places)
    assert fmt.money(micro) == format_currency(Decimal(micro) / MICRO, currency, locale=fmt.locale,
                                               decimal_quantization=False)
    assert fmt.number(value) == format_decimal(value, locale=fmt.locale, decimal_quantization=False)
    assert fmt.number(micro) == format_decimal(micro, locale=fmt.locale, decimal_quantization=False)


@settings(max_examples=400, deadline=None)
@given(t=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       language=st.sampled_from(i18n.LANGUAGES),
       zone=st.sampled_from(("Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")))
def test_the_kept_date_and_time_parts_are_babels(t: datetime, language: str, zone: str) -> None:
    """Formats.datetime (the date part and the time-of-day part each formatted once and kept) is Babel's
    format_datetime to the character, across daylight-saving changes and zones with half-hour offsets."""
    fmt = i18n.Formats(language, "CNY", ZoneInfo(zone))
    assert i18n._datetime_pattern(language) is not None   # both languages take the kept parts, not Babel's call
    assert fmt.datetime(t) == format_datetime(t, "medium", tzinfo=ZoneInfo(zone), locale=fmt.locale)
    assert fmt.date(t.date()) == format_date(t.date(), "medium", locale=fmt.locale)


def test_floats_and_negative_zero_are_left_to_babel() -> None:
    fmt = i18n.Formats("en", "CNY", ZoneInfo("UTC"))
    assert fmt.number(1.5) == "1.5"
    assert fmt.number(Decimal("-0.0")) == format_decimal(Decimal("-0.0"), locale=fmt.locale,
                                                         decimal_quantization=False)


def test_pages_follow_accept_language_and_the_switch(base_url: str, issued: Tokens) -> None:
    with httpx.Client(base_url=base_url) as c:
        page = c.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert '<html lang="zh-Hans"' in page.text and "管理员、运维人员和审计员" in page.text
    with log_in(base_url, issued.admin) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/users").text).group(1)  # type: ignore[union-attr]
        r = c.post("/preferences", data={"csrf": csrf, "lang": "zh_Hans", "theme": "dark", "next": "/users"})
        assert (r.status_code, r.headers["location"]) == (303, "/users")
        page = c.get("/users", headers={"Accept-Language": "en"})
        assert "<h1>用户</h1>" in page.text and 'data-theme="dark"' in page.text
        assert ">受限</span>" in page.text and ">limited<" not in page.text   # tier names are translated too


def test_catalogs_are_read_from_po() -> None:
    """What the wheel must carry at run time: the .po files themselves (no .mo is compiled)."""
    assert not list(i18n.LOCALE_DIR.rglob("*.mo"))
    assert i18n.catalog("zh_Hans").gettext("Log in") == "登录"
    assert i18n.catalog("zh_Hans").ngettext("%(count)s day", "%(count)s days", 30) == "%(count)s 天"
    assert i18n.catalog("en").ngettext("%(count)s day", "%(count)s days", 1) == "%(count)s day"
