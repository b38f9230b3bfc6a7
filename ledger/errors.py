"""Every error the ledger raises on purpose. Each carries its data, so callers (API, CLI, controller) can
render it or act on it without parsing messages; ``code`` is stable and ``details`` is JSON-ready.

An error about money keeps its amounts in micro-units in ``details`` and writes them into its message as
decimal text (``-5.000000``); ``describe(currency)`` is the message with the currency after each amount,
what a person should read. Both come from the one ``template``, so they cannot drift apart."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base class: ``code`` names the error, ``details`` holds the data behind the message."""

    code = "ledger_error"
    # For money errors: the message with ``{name}`` for each of ``details``; those named in ``amounts`` are
    # micro-units, written as money.
    template = ""
    amounts: tuple[str, ...] = ()

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def describe(self, currency: str) -> str:
        """The message for a person: amounts in ``currency`` (``-5.000000 CNY``), never in micro-units."""
        if not self.template:
            return self.message
        return _fill(self.template, self.amounts, self.details, f" {currency}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.details.items())
        return f"{type(self).__name__}({args})"


class ConfigError(LedgerError):
    """A configuration key is missing or malformed (every package's: ledger.environ reads them all); ``key``
    names it, ``reason`` says what is wrong."""

    code = "config_error"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"configuration {key}: {reason}", key=key, reason=reason)
        self.key = key
        self.reason = reason


class MalformedAmount(LedgerError):
    code = "malformed_amount"

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"malformed amount {text!r}: {reason}", text=text, reason=reason)


def _fill(template: str, amounts: tuple[str, ...], details: dict[str, Any], suffix: str) -> str:
    # money imports this module (MalformedAmount), so its one formatter is imported when an error is rendered
    from ledger.money import format_amount

    return template.format(**{k: f"{format_amount(v)}{suffix}" if k in amounts else v for k, v in details.items()})


class _MoneyError(LedgerError):
    def __init__(self, **details: Any) -> None:
        super().__init__(_fill(self.template, self.amounts, details, ""), **details)


class NonPositiveAmount(_MoneyError):
    code = "non_positive_amount"
    template = "amount must be positive, got {amount}"
    amounts = ("amount",)

    def __init__(self, amount: int) -> None:
        super().__init__(amount=amount)


class InvalidName(LedgerError):
    code = "invalid_name"

    def __init__(self, kind: str, name: str, rule: str) -> None:
        super().__init__(f"invalid {kind} name {name!r}: {rule}", kind=kind, name=name, rule=rule)


class InvalidCharacters(LedgerError):
    code = "invalid_characters"

    def __init__(self, field: str, character: str) -> None:
        point = f"U+{ord(character):04X}"
        super().__init__(f"{field}: control and format characters (Unicode Cc, Cf) are not allowed, found {point}",
                         field=field, character=point)


class DuplicateName(LedgerError):
    code = "duplicate_name"

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} already exists", kind=kind, name=name)


class UnknownUser(LedgerError):
    code = "unknown_user"

    def __init__(self, name: str, node: str | None = None) -> None:
        where = f" on node {node!r}" if node else ""
        super().__init__(f"unknown user {name!r}{where}", name=name, node=node)


class UnknownProject(LedgerError):
    code = "unknown_project"

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown project {name!r}", name=name)


class UnknownWallet(LedgerError):
    code = "unknown_wallet"

    def __init__(self, ref: str) -> None:
        super().__init__(f"unknown wallet {ref!r} (use user:NAME, project:NAME or a user name)", ref=ref)


class UnknownEntry(LedgerError):
    code = "unknown_entry"

    def __init__(self, entry_id: int) -> None:
        super().__init__(f"unknown journal entry {entry_id}", entry_id=entry_id)


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"

    def __init__(self, key: str, existing_sha256: str, attempted_sha256: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used with different content",
            key=key,
            existing_sha256=existing_sha256,
            attempted_sha256=attempted_sha256,
        )


class MissingPrice(LedgerError):
    code = "missing_price"

    def __init__(self, resource: str, model: str | None, at: str) -> None:
        what = f"{resource} model {model!r}" if model else resource
        super().__init__(f"no price for {what} valid at {at}", resource=resource, model=model, at=at)


class UnitMismatch(LedgerError):
    code = "unit_mismatch"

    def __init__(self, resource: str, expected: str, got: str) -> None:
        super().__init__(
            f"{resource} usage must be in {expected!r}, got {got!r}", resource=resource, expected=expected, got=got
        )


class InvalidUsage(LedgerError):
    code = "invalid_usage"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid usage record {key!r}: {reason}", key=key, reason=reason)


class InvalidPrice(LedgerError):
    code = "invalid_price"

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid price: {reason}", reason=reason)


class AlreadyReversed(LedgerError):
    code = "already_reversed"

    def __init__(self, entry_id: int, by: int) -> None:
        super().__init__(f"entry {entry_id} was already reversed by entry {by}", entry_id=entry_id, by=by)


class NotRefundable(LedgerError):
    code = "not_refundable"

    def __init__(self, entry_id: int, kind: str) -> None:
        super().__init__(f"entry {entry_id} is a {kind} entry; only usage charges are refunded", entry_id=entry_id,
                         kind=kind)


class RefundExceedsCharge(_MoneyError):
    code = "refund_exceeds_charge"
    template = "entry {entry_id}: refund of {asked} exceeds the {refundable} still refundable"
    amounts = ("asked", "refundable")

    def __init__(self, entry_id: int, refundable: int, asked: int) -> None:
        super().__init__(entry_id=entry_id, refundable=refundable, asked=asked)


class InsufficientFunds(_MoneyError):
    code = "insufficient_funds"
    template = "{account}: {asked} asked, {available} available"
    amounts = ("asked", "available")

    def __init__(self, account: str, available: int, asked: int) -> None:
        super().__init__(account=account, available=available, asked=asked)


class LedgerUnavailable(LedgerError):
    code = "ledger_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"ledger database unavailable: {reason}", reason=reason)


class PeriodClosed(LedgerError):
    code = "period_closed"

    def __init__(self, at: str, closed_before: str) -> None:
        super().__init__(f"{at} is in a closed period (the ledger is closed before {closed_before}); closed periods"
                         " never change: book a correction in the open period", at=at, closed_before=closed_before)


class InvalidClose(LedgerError):
    code = "invalid_close"

    def __init__(self, through: str, reason: str) -> None:
        super().__init__(f"cannot close the period through {through}: {reason}", through=through, reason=reason)
