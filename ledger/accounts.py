"""Account codes (one function per kind of account) and creating accounts on first use."""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.errors import InvalidName
from ledger.records import BY_MODEL

NAME_RULE = r"[a-z_][a-z0-9_.-]{0,63}"
_NAME = re.compile(NAME_RULE)
FUNDING_DEFAULT = "bank"
GRANTS = "expenses:grants"
COUNTERS = {"adjustment": "expenses:adjustment", "writeoff": "expenses:writeoff"}
# An opening balance brought over from another system (ledger.importing): an adjustment whose counter account is
# the source's equity account, so the old money enters the books as equity, neither revenue nor an expense.
OPENING_COUNTER = "opening"
MIGRATION_EQUITY = "equity:migration"
KIND_OF_ROOT = {"assets": "asset", "liabilities": "liability", "equity": "equity", "revenues": "revenue",
                "expenses": "expense"}


def check_name(kind: str, name: str) -> str:
    """``name`` if it may be a user/project/channel name (it becomes part of account codes), else InvalidName."""
    if not _NAME.fullmatch(name):
        raise InvalidName(kind, name, "1-64 of a-z 0-9 _ . -, starting with a letter or _")
    return name


def wallet_code(owner: str, name: str) -> str:
    """``owner`` is ``user`` or ``project``."""
    return f"liabilities:wallet:{owner}:{name}"


def grant_code(wallet: str, grant_no: int) -> str:
    return f"{wallet}:grant:{grant_no}"


def funding_code(channel: str) -> str:
    return f"assets:funding:{check_name('funding channel', channel)}"


def migration_equity_code(source: str) -> str:
    return f"{MIGRATION_EQUITY}:{check_name('import source', source)}"


def model_slug(model: str) -> str:
    """A GPU model name as an account segment: lower-case, runs of other characters become one ``-``."""
    slug = re.sub(r"[^a-z0-9.]+", "-", model.lower()).strip("-.")
    return slug or "unknown"


def revenue_code(resource: str, model: str) -> str:
    """``revenues:gpu:<model>``, ``revenues:reservation:<model>`` (held, unused GPUs), ``revenues:cpu`` ..."""
    return f"revenues:{resource}:{model_slug(model)}" if resource in BY_MODEL else f"revenues:{resource}"


def ensure_account(conn: Connection, code: str, currency: str, *, no_overdraft: bool = False) -> int:
    """The id of account ``code``, created if missing. ``no_overdraft``: debits may never exceed credits
    (for a liability: the balance can never go below zero), enforced by the database."""
    kind = KIND_OF_ROOT[code.split(":", 1)[0]]
    row = conn.execute(
        text(
            "INSERT INTO ledger.account (code, kind, currency, debits_must_not_exceed_credits)"
            " VALUES (:code, :kind, :currency, :flag) ON CONFLICT (code) DO NOTHING RETURNING id"
        ),
        {"code": code, "kind": kind, "currency": currency, "flag": no_overdraft},
    ).scalar()
    if row is not None:
        return int(row)
    return int(conn.execute(text("SELECT id FROM ledger.account WHERE code = :c"), {"c": code}).scalar_one())
