"""FOCUS 1.0 (the FinOps Open Cost and Usage Specification) CSV of usage charges, for cost tools
(checked with the FinOps Foundation's ``focus-validator --validate-version 1.0``).

One row per usage charge, streamed in (effective time, entry id) order. This is not a ledger export: it
has no opening or closing balances and no chain head, only what each charge was for and what it cost.
Costs are the charged amount with six decimals (list, contracted, effective and billed cost are the same:
there are no discounts or commitments); the unit price is the price version's amount per unit of its unit,
rounded to 12 decimals (``price / per`` need not terminate: 0.50 per 60 gpu-seconds), so ``ListCost`` is
the exact charge and ``ListUnitPrice * PricingQuantity`` only close to it (charges telescope, see
docs/ledger.md). Times are UTC (``...Z``); the billing period is the local calendar month of the charge.
The resource column is spelled ``ResourceID``, as focus-validator 1.0.0's rules name it (the spec's table
writes ``ResourceId``).

``FocusExporter.charges`` yields each row as typed cells (``Cell``: Decimal, UTC datetime, text or None for
empty); ``write`` renders them as CSV text, ``ledger.exports.focus_parquet`` as typed Parquet columns, so the
two files cannot disagree on a value.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any, TypeAlias
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.money import SCALE
from ledger.reports import local_midnight

COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuer",
    "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit", "Provider", "Publisher",
    "RegionId", "RegionName", "ResourceID", "ResourceName", "ResourceType", "ServiceCategory", "ServiceName",
    "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)
ISSUER = "gpuledger"
UNIT_PRICE = Decimal("1e-12")
# The typed columns (every other one is text): costs with six decimals, unit prices with 12, quantities exact,
# and UTC times to the second (FOCUS 1.0's date-time format has no fractions).
MONEY = frozenset({"BilledCost", "ContractedCost", "EffectiveCost", "ListCost"})
UNIT_PRICES = frozenset({"ContractedUnitPrice", "ListUnitPrice"})
QUANTITIES = frozenset({"ConsumedQuantity", "PricingQuantity"})
TIMES = frozenset({"BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"})
Cell: TypeAlias = Decimal | datetime | str | None

_CHARGES_SQL = """
SELECT e.id, e.effective_at, u.idem_key, u.node, u.resource, u.model, u.quantity, u.unit, u.interval_start,
       u.interval_end, u.amount, u.price_version_id, pv.amount AS price, pv.per, bu.name AS user_name, a.code AS wallet
  FROM ledger.journal_entry e JOIN ledger.usage u ON u.id = e.usage_id
  JOIN ledger.billing_user bu ON bu.id = u.user_id JOIN ledger.account a ON a.id = u.account_id
  LEFT JOIN ledger.price_version pv ON pv.id = u.price_version_id
 WHERE e.kind = 'usage' AND e.effective_at >= :lo AND e.effective_at < :hi
 ORDER BY e.effective_at, e.id
"""


def to_second(moment: datetime) -> datetime:
    """``moment`` in UTC, fractions of a second dropped (the report's time resolution)."""
    return moment.astimezone(UTC).replace(microsecond=0)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain(number: Decimal) -> str:
    """A decimal without exponent or trailing zeros (``60``, ``7.25``)."""
    return format(number.normalize(), "f")


def as_text(column: str, cell: Cell) -> str:
    """A cell as the CSV writes it: costs with their six decimals, other numbers plain, times ``...Z``."""
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return utc(cell)
    if isinstance(cell, Decimal):
        return format(cell, "f") if column in MONEY else plain(cell)
    return cell


class FocusExporter:
    name = "focus"

    def __init__(self, currency: str, tz: ZoneInfo) -> None:
        self.currency = currency
        self.tz = tz

    def write(self, conn: Connection, out: IO[str], start: date | None, end: date | None) -> int:
        """Write the usage charges effective in ``[start, end)`` (local dates; None = unbounded) as CSV; return
        how many rows were written."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        count = 0
        for row in self.charges(conn, start, end):
            writer.writerow(tuple(as_text(column, cell) for column, cell in zip(COLUMNS, row, strict=True)))
            count += 1
        return count

    def charges(self, conn: Connection, start: date | None, end: date | None) -> Iterator[tuple[Cell, ...]]:
        """The rows of the usage charges effective in ``[start, end)``, cells in ``COLUMNS`` order, streamed."""
        lo = local_midnight(start, self.tz) if start else datetime(1970, 1, 1, tzinfo=self.tz)
        hi = local_midnight(end, self.tz) if end else datetime(9999, 1, 1, tzinfo=self.tz)
        with conn.execution_options(yield_per=5000).execute(text(_CHARGES_SQL), {"lo": lo, "hi": hi}) as rows:
            for r in rows:
                yield self._row(r)

    def _month(self, moment: datetime) -> tuple[datetime, datetime]:
        local = moment.astimezone(self.tz).date().replace(day=1)
        following = local.replace(year=local.year + 1, month=1) if local.month == 12 else local.replace(
            month=local.month + 1)
        return to_second(local_midnight(local, self.tz)), to_second(local_midnight(following, self.tz))

    def _row(self, r: Any) -> tuple[Cell, ...]:
        cost = Decimal(int(r.amount)).scaleb(-SCALE)  # micro-units: exactly six decimals
        quantity = Decimal(r.quantity)
        text_quantity = plain(quantity)
        unit_price = None if r.price is None else (Decimal(r.price) / Decimal(r.per)).quantize(UNIT_PRICE)
        period_start, period_end = self._month(r.effective_at)
        what = f"{r.resource} {r.model}".strip()
        tags = {"entry-id": f"E{r.id}", "usage-key": r.idem_key, "node": r.node}
        if r.model:
            tags["model"] = r.model
        values = {
            "BilledCost": cost, "BillingAccountId": r.wallet, "BillingAccountName": r.wallet.rsplit(":", 1)[-1],
            "BillingCurrency": self.currency, "BillingPeriodEnd": period_end, "BillingPeriodStart": period_start,
            "ChargeCategory": "Usage", "ChargeDescription": f"{text_quantity} {r.unit} of {what} on {r.node}",
            "ChargeFrequency": "Usage-Based", "ChargePeriodEnd": to_second(r.interval_end),
            "ChargePeriodStart": to_second(r.interval_start), "ConsumedQuantity": quantity, "ConsumedUnit": r.unit,
            "ContractedCost": cost, "ContractedUnitPrice": unit_price, "EffectiveCost": cost, "InvoiceIssuer": ISSUER,
            "ListCost": cost, "ListUnitPrice": unit_price, "PricingCategory": "Standard",
            "PricingQuantity": quantity, "PricingUnit": r.unit, "Provider": ISSUER, "Publisher": ISSUER,
            "ResourceID": f"{r.node}/{r.resource}", "ResourceName": r.node, "ResourceType": r.resource,
            "ServiceCategory": "Compute", "ServiceName": f"{ISSUER} {r.resource}",
            "SkuId": what.replace(" ", ":"),
            "SkuPriceId": None if r.price_version_id is None else f"P{r.price_version_id}",
            "SubAccountId": r.user_name, "SubAccountName": r.user_name, "Tags": json.dumps(tags, sort_keys=True),
        }
        return tuple(values.get(column) for column in COLUMNS)
