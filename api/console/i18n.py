"""Languages: English and Simplified Chinese. The message catalogs are the .po files under ``locale/``, read
at start (no compiled .mo to keep in step; the wheel carries the .po files). The language comes from the
``gl_lang`` cookie (the switch), else ``Accept-Language``, else English.

Money is shown exactly: every digit the ledger keeps that is not a trailing zero (Babel's
``decimal_quantization=False``: at least the currency's own digits, never rounded). Times are shown in the
ledger's configured time zone (GPULEDGER_TIMEZONE)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import negotiate_locale
from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

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
class Formats:
    """Money, numbers and times for one locale, currency and time zone."""

    language: str
    currency: str
    tz: ZoneInfo

    @property
    def locale(self) -> Locale:
        return catalog(self.language).locale

    def money(self, micro: int) -> str:
        return format_currency(Decimal(micro) / MICRO, self.currency, locale=self.locale, decimal_quantization=False)

    def number(self, value: Decimal) -> str:
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def datetime(self, t: datetime) -> str:
        return format_datetime(t, "medium", tzinfo=self.tz, locale=self.locale)

    def date(self, d: date) -> str:
        return format_date(d, "medium", locale=self.locale)
