"""Beancount account names for ledger account codes: readable, and reversible (``account_code`` inverts
``account_name``), so no two codes share a name.

Beancount wants each segment after the root to start with an upper-case letter or a digit and to hold only
letters, digits and ``-`` (``beancount.core.account.ACC_COMP_NAME_RE``). A segment that is *natural* is only
capitalised: its first character is an ASCII lower-case letter (made upper-case), an ASCII digit, or a
non-ASCII upper-case letter or decimal digit; the rest are ASCII lower-case letters, digits, ``-`` (not
last) and non-ASCII letters and decimal digits, and ``_`` followed by an ASCII lower-case letter, written
as ``-`` and that letter upper-cased (``li_wei`` -> ``Li-Wei``; a natural segment has no other upper-case
ASCII letter after a ``-``, which is why the rule reverses). Every other segment (a ``.``, an upper-case
ASCII letter, a ``_`` not before a lower-case letter, a trailing ``-``, anything else) is written as a
readable approximation, ``--``, the hex of its UTF-8 bytes and a closing ``-``: ``lab.1`` ->
``Lab-1--6c61622e31-``. A natural segment never ends with ``-``, so the closing ``-`` tells the two apart,
and the hex after the last ``--`` is the segment itself.
"""

from __future__ import annotations

import unicodedata

ROOTS = {"assets": "Assets", "liabilities": "Liabilities", "equity": "Equity", "revenues": "Income",
         "expenses": "Expenses"}
_CODE_ROOTS = {v: k for k, v in ROOTS.items()}


def _lower(c: str) -> bool:
    return "a" <= c <= "z"


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


def _wide(c: str, *categories: str) -> bool:
    """A non-ASCII character of one of the Unicode ``categories`` (``L`` = any letter)."""
    if c.isascii():
        return False
    cat = unicodedata.category(c)
    return cat in categories or (cat[0] == "L" and "L" in categories)


def _natural(part: str) -> str | None:
    """The capitalised segment, or None where ``part`` is not natural (see the module)."""
    if not part:
        return None
    first = part[0]
    if _lower(first):
        out = [first.upper()]
    elif _digit(first) or _wide(first, "Lu", "Nd"):
        out = [first]
    else:
        return None
    i = 1
    while i < len(part):
        c = part[i]
        if _lower(c) or _digit(c) or _wide(c, "L", "Nd") or (c == "-" and i + 1 < len(part)):
            out.append(c)
        elif c == "_" and i + 1 < len(part) and _lower(part[i + 1]):
            out.append("-" + part[i + 1].upper())
            i += 1
        else:
            return None
        i += 1
    return "".join(out)


def _approximation(part: str) -> str:
    """Readable only: what an accountant sees before the hex of an escaped segment."""
    legal = "".join(c if c.isascii() and c.isalnum() or _wide(c, "L", "Nd") else "-" for c in part)
    if _lower(legal[:1]):
        return legal[0].upper() + legal[1:]
    return legal if _digit(legal[:1]) or "A" <= legal[:1] <= "Z" else "X" + legal


def segment(part: str) -> str:
    """One code segment as a Beancount segment."""
    natural = _natural(part)
    return natural if natural is not None else f"{_approximation(part)}--{part.encode('utf-8').hex()}-"


def unsegment(name: str) -> str:
    """The inverse of ``segment``."""
    if name.endswith("-"):
        return bytes.fromhex(name[:-1].rpartition("--")[2]).decode("utf-8")
    out = [name[0].lower() if "A" <= name[0] <= "Z" else name[0]]
    i = 1
    while i < len(name):
        if name[i] == "-" and i + 1 < len(name) and "A" <= name[i + 1] <= "Z":
            out.append("_" + name[i + 1].lower())
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def account_name(code: str) -> str:
    """``liabilities:wallet:user:li_wei`` -> ``Liabilities:Wallet:User:Li-Wei``."""
    root, *rest = code.split(":")
    return ":".join([ROOTS[root], *(segment(p) for p in rest)])


def account_code(name: str) -> str:
    """The inverse of ``account_name``."""
    root, *rest = name.split(":")
    return ":".join([_CODE_ROOTS[root], *(unsegment(p) for p in rest)])
