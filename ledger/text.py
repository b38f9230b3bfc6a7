"""The one rule for free text people write into the ledger (memos, reasons, display names, price patterns)
and into the API's tables: no Unicode control (Cc: C0, DEL, C1 such as U+0085 and U+009B), format (Cf:
bidi overrides such as U+202E, zero-width characters) or surrogate (Cs) characters. Everything written
comes back on terminals, in exports and in journals, where such characters can hide or reorder text, end
lines or start escape sequences; PostgreSQL cannot store NUL or a lone surrogate at all."""

from __future__ import annotations

import unicodedata

from ledger.errors import InvalidCharacters

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def refused_character(text: str) -> str | None:
    """The first character of ``text`` the rule refuses, or None."""
    # str.isprintable() is False for every refused category (and for a few allowed ones, such as U+00A0),
    # and it runs in C: the per-character lookup is only for text that fails it.
    if text.isprintable():
        return None
    return next((c for c in text if unicodedata.category(c) in REFUSED_CATEGORIES), None)


def check_text(field: str, text: str) -> str:
    """``text`` if the rule allows it, else InvalidCharacters naming ``field`` and the character (not the text)."""
    refused = refused_character(text)
    if refused is not None:
        raise InvalidCharacters(field, refused)
    return text
