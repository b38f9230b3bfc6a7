"""Languages: English and Simplified Chinese. The message catalogs are the .po files under ``locale/``, read
at start (no compiled .mo to keep in step; the wheel carries the .po files). The language comes from the
``gl_lang`` cookie (the switch), else ``Accept-Language``, else English.

Money is shown exactly: every digit the ledger keeps that is not a trailing zero (Babel's
``decimal_quantization=False``: at least the currency's own digits, never rounded). Times are shown in the
ledger's configured time zone (GPULEDGER_TIMEZONE)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import negotiate_locale
from babel.dates import format_date, format_datetime, format_time
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, get_currency_precision, get_currency_symbol

from ledger.money import MICRO

LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("en", "zh_Hans")
DEFAULT = "en"
COOKIE = "gl_lang"
# What each language is called in the switch, in itself (not translated: a reader finds their own).
NAMES = {"en": "English", "zh_Hans": "简体中文"}


@dataclass(frozen=True)
class Catalog:
    """One language's messages: msgid -> text, and (singular, plural) -> forms."""

    locale: Locale
    messages: dict[str, str]
    plurals: dict[str, tuple[str, ...]]

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = self.plurals.get(singular)
        if not forms or not all(forms):
            return singular if n == 1 else plural
        index = 0 if len(forms) == 1 else int(self.locale.plural_form(n) != "one")
        return forms[min(index, len(forms) - 1)]


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


@functools.cache
def catalog(language: str) -> Catalog:
    with po_path(language).open("rb") as f:
        po = read_po(f, locale=language)
    messages: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    for m in po:
        if not m.id or m.fuzzy:
            continue
        if isinstance(m.id, (tuple, list)):
            forms = m.string if isinstance(m.string, (tuple, list)) else (m.string,)
            plurals[str(m.id[0])] = tuple(str(f or "") for f in forms)
        else:
            messages[str(m.id)] = str(m.string or "")
    return Catalog(Locale.parse(language), messages, plurals)


def choose(cookie: str | None, accept_language: str) -> str:
    """The language for a request: the switch's cookie if it names one we have, else the best of
    Accept-Language (``zh``, ``zh-CN`` and ``zh-Hans`` all mean Simplified Chinese here), else English."""
    if cookie in LANGUAGES:
        return cookie
    wanted = []
    for part in accept_language.split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if tag and weight > 0:
            wanted.append((weight, tag.strip()))
    wanted.sort(key=lambda w: -w[0])
    for _, tag in wanted:
        lower = tag.lower()
        if lower.startswith("zh") and not any(t in lower for t in ("hant", "-tw", "-hk", "-mo")):
            return "zh_Hans"
        found = negotiate_locale([tag.replace("-", "_")], ["en"])
        if found:
            return "en"
    return DEFAULT


@dataclass(frozen=True)
class _Shape:
    """A number pattern of plain three-digit grouping, spelled out once per locale (and currency): Babel's
    ``format_currency`` / ``format_decimal`` re-read the locale's data on every call, a quarter of a 90-day usage
    page's time. Other patterns (and floats, negative zero) are left to Babel; tests compare both on random values."""

    prefixes: tuple[str, str]   # positive, negative
    suffixes: tuple[str, str]
    group: str
    decimal: str
    min_fraction: int

    def format(self, value: Decimal) -> str:
        negative = value < 0
        whole, _, fraction = f"{abs(value):f}".partition(".")
        fraction = fraction.rstrip("0").ljust(self.min_fraction, "0")
        digits = f"{int(whole):,}".replace(",", self.group) + (self.decimal + fraction if fraction else "")
        return self.prefixes[negative] + digits + self.suffixes[negative]


@functools.cache
def _shape(language: str, currency: str | None) -> _Shape | None:
    locale = catalog(language).locale
    pattern = locale.currency_formats["standard"] if currency else locale.decimal_formats[None]
    symbols = locale.number_symbols[locale.default_numbering_system]
    quoted = any("'" in affix for affix in (*pattern.prefix, *pattern.suffix))
    if pattern.grouping != (3, 3) or pattern.int_prec[0] != 1 or quoted:
        return None
    symbol = get_currency_symbol(currency, locale) if currency else ""

    def spelled(affix: str) -> str:
        return affix.replace("¤", symbol).replace("-", symbols["minusSign"])

    return _Shape((spelled(pattern.prefix[0]), spelled(pattern.prefix[1])),
                  (spelled(pattern.suffix[0]), spelled(pattern.suffix[1])),
                  symbols["group"], symbols["decimal"],
                  get_currency_precision(currency) if currency else pattern.frac_prec[0])


def _fast(value: object) -> bool:
    return isinstance(value, int | Decimal) and not (isinstance(value, Decimal) and value.is_signed() and not value)


# Fields of a time pattern whose text depends on the time of day alone (not on the date or the zone).
_TIME_OF_DAY = frozenset("hHkKmsaBb")


@functools.cache
def _datetime_pattern(language: str) -> str | None:
    """The locale's medium date-time joiner (``{1}, {0}``) if its time part depends on the time of day alone, so
    that part and the date part can each be formatted once and kept: Babel's ``format_datetime`` re-reads the
    locale's data for every field of every call, most of a 200-line statement page's rendering. None (Babel for
    every call) for a pattern with a zone, fractional seconds or anything else."""
    locale = catalog(language).locale
    pattern = locale.time_formats["medium"].pattern
    unquoted = "".join(part for i, part in enumerate(pattern.split("'")) if i % 2 == 0)
    if not {c for c in unquoted if c.isalpha()} <= _TIME_OF_DAY:
        return None
    return str(locale.datetime_formats["medium"]).replace("'", "")


@functools.lru_cache(maxsize=1 << 16)
def _time_of_day(language: str, hour: int, minute: int, second: int) -> str:
    return format_time(time(hour, minute, second), "medium", locale=catalog(language).locale)


@functools.lru_cache(maxsize=1 << 12)
def _medium_date(language: str, day: date) -> str:
    return format_date(day, "medium", locale=catalog(language).locale)


@dataclass(frozen=True)
class Formats:
    """Money, numbers and times for one locale, currency and time zone."""

    language: str
    currency: str
    tz: ZoneInfo

    @property
    def locale(self) -> Locale:
        return catalog(self.language).locale

    def money(self, micro: int) -> str:
        amount = Decimal(micro) / MICRO
        shape = _shape(self.language, self.currency)
        if shape is not None and _fast(amount):
            return shape.format(amount)
        return format_currency(amount, self.currency, locale=self.locale, decimal_quantization=False)

    def number(self, value: Decimal) -> str:
        shape = _shape(self.language, None)
        if shape is not None and _fast(value):
            return shape.format(Decimal(value))
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def datetime(self, t: datetime) -> str:
        joiner = _datetime_pattern(self.language)
        if joiner is None or t.tzinfo is None:
            return format_datetime(t, "medium", tzinfo=self.tz, locale=self.locale)
        local = t.astimezone(self.tz)
        return joiner.replace("{0}", _time_of_day(self.language, local.hour, local.minute, local.second)).replace(
            "{1}", _medium_date(self.language, local.date()))

    def date(self, d: date) -> str:
        return _medium_date(self.language, d)
