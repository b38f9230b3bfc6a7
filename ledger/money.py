"""Money as integer micro-units of the one configured currency, and the one place that knows which sign a
debit has. Nothing here touches floats: text and Decimal go in, int comes out."""

from __future__ import annotations

import enum
import re
from decimal import Decimal, InvalidOperation

from ledger.errors import MalformedAmount

SCALE = 6
MICRO = 10**SCALE
# A posting is a PostgreSQL BIGINT; refusing larger amounts here gives a clear error instead of an overflow.
MAX_MICRO = 2**63 - 1

_PLAIN_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class Side(enum.Enum):
    DEBIT = "debit"
    CREDIT = "credit"


def signed(side: Side, micro: int) -> int:
    """The stored amount of a posting of ``micro`` (> 0) on ``side``: debit positive, credit negative.

    This is the sign convention of hledger and Beancount, so exports copy amounts verbatim.
    """
    if micro <= 0:
        raise ValueError(f"posting magnitude must be positive, got {micro}")
    return micro if side is Side.DEBIT else -micro


def available(posting_sum: int) -> int:
    """What a wallet (a liability, credit-normal) holds for its owner: the negated sum of its postings."""
    return -posting_sum


def parse_decimal(text: str, max_places: int, what: str = "amount") -> Decimal:
    """A finite decimal from plain text (no exponent, at most ``max_places`` decimals), else MalformedAmount."""
    if not isinstance(text, str):
        raise MalformedAmount(repr(text), f"{what} must be given as decimal text, not {type(text).__name__}")
    stripped = text.strip().replace("_", "")
    if not _PLAIN_DECIMAL.match(stripped):
        raise MalformedAmount(text, f"{what} must be a plain decimal number such as 12.50")
    try:
        value = Decimal(stripped)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes this
        raise MalformedAmount(text, str(exc)) from exc
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > max_places and value != value.quantize(Decimal(1).scaleb(-max_places)):
        raise MalformedAmount(text, f"{what} has more than {max_places} decimal places")
    return value


def parse_amount(text: str) -> int:
    """Decimal currency text -> micro-units, exactly; more than 6 decimals or out of BIGINT range is refused."""
    micro = parse_decimal(text, SCALE) * MICRO
    if abs(micro) > MAX_MICRO:
        raise MalformedAmount(text, "amount is out of range")
    return int(micro)


def format_amount(micro: int) -> str:
    """Micro-units -> decimal text with exactly six decimals (what the exports and reports print)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"
