"""Bearer tokens: 256 random bits behind a 48-bit lookup prefix; only the SHA-256 is stored.

A token reads ``glt_<prefix>_<secret>``. The prefix finds the row (an index lookup), the hash of the whole
token is compared in constant time, then expiry and revocation are checked. SHA-256 without a salt is
enough here: the secret has 256 bits of entropy, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

ROLES = ("admin", "operator", "auditor", "user")
_SHAPE = re.compile(r"glt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's id, name, role and (role ``user``) its billing user."""

    token_id: int
    name: str
    role: str
    billing_user: str | None

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


@dataclass(frozen=True)
class Grant:
    """A token found valid in the database: its principal and when it stops being valid (None: never)."""

    principal: Principal
    expires_at: datetime | None


@dataclass(frozen=True)
class TokenInfo:
    id: int
    prefix: str
    name: str
    role: str
    billing_user: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """The plain token is only ever in this object, returned once to whoever created it."""

    token: str
    info: TokenInfo


def new_token() -> tuple[str, str, bytes]:
    """(token, prefix, sha256) for a fresh token."""
    prefix = secrets.token_hex(6)
    token = f"glt_{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, digest(token)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def prefix_of(token: str) -> str | None:
    """The lookup prefix of a well-formed token, else None (no database query for garbage)."""
    m = _SHAPE.fullmatch(token)
    return m.group(1) if m else None


_COLUMNS = "id, prefix, name, role, billing_user, created_at, created_by, expires_at, revoked_at"


def issue(conn: Connection, *, name: str, role: str, billing_user: str | None, expires_at: datetime | None,
          created_by: str) -> IssuedToken:
    token, prefix, sha = new_token()
    row = conn.execute(
        text(f"INSERT INTO api.token (prefix, sha256, name, role, billing_user, expires_at, created_by)"  # noqa: S608 (constant column lists and clauses)
             f" VALUES (:p, :h, :n, :r, :u, :e, :c) RETURNING {_COLUMNS}"),
        {"p": prefix, "h": sha, "n": name, "r": role, "u": billing_user, "e": expires_at, "c": created_by},
    ).one()
    return IssuedToken(token, TokenInfo(*row))


def authenticate(conn: Connection, token: str) -> Grant | None:
    """The grant of a valid, unexpired, unrevoked token; None otherwise (the caller says 401)."""
    prefix = prefix_of(token)
    if prefix is None:
        return None
    row = conn.execute(
        text("SELECT id, name, role, billing_user, sha256, (expires_at IS NULL OR expires_at > now())"
             " AND revoked_at IS NULL, expires_at FROM api.token WHERE prefix = :p"), {"p": prefix},
    ).one_or_none()
    if row is None or not hmac.compare_digest(bytes(row[4]), digest(token)) or not row[5]:
        return None
    return Grant(Principal(row[0], row[1], row[2], row[3]), row[6])


def get(conn: Connection, token_id: int) -> TokenInfo | None:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM api.token WHERE id = :i"), {"i": token_id}).one_or_none()  # noqa: S608 (constant column lists and clauses)
    return None if row is None else TokenInfo(*row)


def list_all(conn: Connection) -> list[TokenInfo]:
    return [TokenInfo(*r) for r in conn.execute(text(f"SELECT {_COLUMNS} FROM api.token ORDER BY id"))]  # noqa: S608 (constant column lists and clauses)


def revoke(conn: Connection, token_id: int) -> TokenInfo | None:
    """Revoke (idempotently: an already revoked token keeps its first revocation time)."""
    conn.execute(text("UPDATE api.token SET revoked_at = now() WHERE id = :i AND revoked_at IS NULL"),
                 {"i": token_id})
    return get(conn, token_id)
