"""The web console's login, proven over SSH (docs/web-login.md): RFC 8628's device flow with a node as the proof.

The console ``start``s a flow for a browser and shows its code; the user runs ``gpuledger-balance --web CODE``
on a node, which leaves the code in a file the kernel says is theirs; the controller's fast job reads it
(``login-codes``) and ``prove``s the flow as that user's billing user; the browser that started the flow
``poll``s and ``redeem``s it, once. The code is shown once and only its SHA-256 is stored; the browser's secret
likewise. Every time is the caller's ``now`` (the database's clock is not asked), so tests need no sleeping.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

# 32 characters without 0, 1, I and O (read aloud or off a screen, they are confused): 8 of them are 40 bits.
# probe.logincodes.CODE_SHAPE and the hook's pattern accept the same alphabet (tests compare them).
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
LIFETIME = timedelta(minutes=10)
RETENTION = timedelta(days=1)
# Open flows cost a row and the nodes' polling each; past this many a new one is refused, so a script
# hammering the console's start page cannot keep every node busy or fill the table. Two concurrent starts
# may both pass the count: the bound is this plus the number of concurrent requests.
MAX_OPEN_FLOWS = 1000
# A node's clock may be behind the controller's: a code counts as written before its flow started only when
# its file's ctime is more than this before the flow's creation.
CLOCK_SLACK = timedelta(seconds=60)
MIN_BROWSER_SECRET = 32
_SHAPE = re.compile(f"[{ALPHABET}]{{{CODE_LENGTH}}}")


class WebLoginError(Exception):
    """Base of this module's refusals."""


class TooManyFlows(WebLoginError):
    def __init__(self, open_flows: int, limit: int) -> None:
        super().__init__(f"{open_flows} login flows are open (limit {limit}); try again in a few minutes")
        self.open_flows = open_flows
        self.limit = limit


class BadCode(WebLoginError):
    def __init__(self, given: str) -> None:
        super().__init__(f"{given[:40]!r} is not a login code: {CODE_LENGTH} of {ALPHABET}, e.g. ABCD-EFGH")
        self.given = given


class WeakBrowserSecret(WebLoginError):
    def __init__(self, length: int) -> None:
        super().__init__(f"the browser secret has {length} characters, at least {MIN_BROWSER_SECRET} are needed")
        self.length = length


class FlowState(enum.StrEnum):
    PENDING = "pending"
    PROVEN = "proven"
    EXPIRED = "expired"
    REDEEMED = "redeemed"


class ProveOutcome(enum.StrEnum):
    PROVEN = "proven"
    UNKNOWN_CODE = "unknown_code"
    EXPIRED = "expired"
    ALREADY_PROVEN = "already_proven"
    WRITTEN_BEFORE_START = "written_before_start"


@dataclass(frozen=True)
class LoginFlow:
    """A started flow; ``code`` exists only here (shown to the user once), the database has its digest."""

    flow_id: int
    code: str
    expires_at: datetime

    @property
    def display(self) -> str:
        return display(self.code)


@dataclass(frozen=True)
class Proof:
    """Who the redeemed flow logs in: the billing user, and the node and Linux user that proved it."""

    billing_user: str
    node: str
    linux_user: str


def normalize(given: str) -> str:
    """The code in the stored form (upper case, no dash): ``abcd-efgh`` -> ``ABCDEFGH``; else ``BadCode``."""
    code = given.strip().upper().replace("-", "", 1)
    if not _SHAPE.fullmatch(code):
        raise BadCode(given)
    return code


def display(code: str) -> str:
    """``ABCDEFGH`` -> ``ABCD-EFGH``, as the console shows it."""
    half = CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def start(conn: Connection, browser_secret: str, *, now: datetime) -> LoginFlow:
    """A new flow bound to ``browser_secret`` (the browser keeps it in a cookie), expiring ``LIFETIME`` from
    ``now``; ``TooManyFlows`` past ``MAX_OPEN_FLOWS`` pending flows, ``WeakBrowserSecret`` for a short secret."""
    if len(browser_secret) < MIN_BROWSER_SECRET:
        raise WeakBrowserSecret(len(browser_secret))
    open_flows = conn.execute(text(
        "SELECT count(*) FROM control.web_login WHERE proven_at IS NULL AND expires_at > :now"),
        {"now": now}).scalar_one()
    if open_flows >= MAX_OPEN_FLOWS:
        raise TooManyFlows(int(open_flows), MAX_OPEN_FLOWS)
    expires_at = now + LIFETIME
    while True:  # a code equal to a kept one (about one in 2^40 per kept flow) is drawn again
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        try:
            with conn.begin_nested():
                flow_id = conn.execute(text(
                    "INSERT INTO control.web_login (code_hash, browser_hash, created_at, expires_at)"
                    " VALUES (:code, :browser, :now, :expires) RETURNING id"),
                    {"code": _digest(code), "browser": _digest(browser_secret), "now": now,
                     "expires": expires_at}).scalar_one()
        except IntegrityError:
            continue
        return LoginFlow(int(flow_id), code, expires_at)


def poll(conn: Connection, flow_id: int, browser_secret: str, *, now: datetime) -> FlowState | None:
    """The flow's state for the browser that started it; None for an unknown flow or another browser's."""
    row = conn.execute(text(
        "SELECT expires_at, proven_at, redeemed_at FROM control.web_login WHERE id = :id AND browser_hash = :b"),
        {"id": flow_id, "b": _digest(browser_secret)}).one_or_none()
    if row is None:
        return None
    if row.redeemed_at is not None:
        return FlowState.REDEEMED
    if row.expires_at <= now:
        return FlowState.EXPIRED
    return FlowState.PROVEN if row.proven_at is not None else FlowState.PENDING


def redeem(conn: Connection, flow_id: int, browser_secret: str, *, now: datetime) -> Proof | None:
    """Log the browser in, once: a proven, unexpired, unredeemed flow of this browser becomes redeemed and its
    ``Proof`` is returned; anything else is None. One conditional UPDATE, so two concurrent calls cannot both
    succeed."""
    row = conn.execute(text(
        "UPDATE control.web_login SET redeemed_at = :now WHERE id = :id AND browser_hash = :b"
        " AND proven_at IS NOT NULL AND redeemed_at IS NULL AND expires_at > :now"
        " RETURNING billing_user, node, linux_user"),
        {"id": flow_id, "b": _digest(browser_secret), "now": now}).one_or_none()
    return None if row is None else Proof(str(row.billing_user), str(row.node), str(row.linux_user))


def awaiting(conn: Connection, *, now: datetime) -> bool:
    """Whether any flow waits for its proof: the controller reads the nodes' spools only then."""
    return bool(conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM control.web_login WHERE proven_at IS NULL AND expires_at > :now)"),
        {"now": now}).scalar_one())


def prove(conn: Connection, code: str, *, billing_user: str, node: str, linux_user: str, written_at: datetime,
          now: datetime) -> ProveOutcome:
    """Mark the pending flow whose code a node reported as proven for ``billing_user`` (whom ``linux_user`` on
    ``node`` bills to). ``code`` is in the stored form (``BadCode`` otherwise); ``written_at`` is the code
    file's ctime on the node. The row is locked, so a second report of the same code reads ALREADY_PROVEN."""
    row = conn.execute(text(
        "SELECT id, created_at, expires_at, proven_at FROM control.web_login WHERE code_hash = :h FOR UPDATE"),
        {"h": _digest(normalize(code))}).one_or_none()
    if row is None:
        return ProveOutcome.UNKNOWN_CODE
    if row.proven_at is not None:
        return ProveOutcome.ALREADY_PROVEN
    if row.expires_at <= now:
        return ProveOutcome.EXPIRED
    if written_at < row.created_at - CLOCK_SLACK:
        return ProveOutcome.WRITTEN_BEFORE_START
    conn.execute(text(
        "UPDATE control.web_login SET proven_at = :now, billing_user = :user, node = :node, linux_user = :linux"
        " WHERE id = :id"), {"id": row.id, "now": now, "user": billing_user, "node": node, "linux": linux_user})
    return ProveOutcome.PROVEN


def prune(conn: Connection, *, now: datetime) -> int:
    """Delete flows created more than ``RETENTION`` before ``now``; returns how many."""
    result = conn.execute(text("DELETE FROM control.web_login WHERE created_at < :cutoff"),
                          {"cutoff": now - RETENTION})
    return int(result.rowcount)
