"""Server-side console sessions (table api.console_session).

The cookie carries 256 random bits; only their SHA-256 is stored, as with tokens (api.tokens: with that much
entropy an unsalted hash leaves nothing to brute-force). A session ends at the first of: its absolute expiry,
``idle`` seconds without a request, its revocation, or the revocation or expiry of the token it was made from.
Every lookup checks all four in the one statement that also moves ``last_seen``, so a revoked token's browser
is refused at its next request, with no cache to wait out."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection

from api.tokens import Principal


@dataclass(frozen=True)
class WebPrincipal:
    """Who a console request acts as. ``token_id`` is None for a principal proven without a token (the
    SSH-proven user login names ``actor`` as ``ssh:NAME@NODE``)."""

    role: str
    billing_user: str | None
    actor: str
    token_id: int | None = None

    @classmethod
    def of_token(cls, principal: Principal) -> WebPrincipal:
        return cls(principal.role, principal.billing_user, principal.actor, principal.token_id)


@dataclass(frozen=True)
class Session:
    id: int
    principal: WebPrincipal
    csrf: str


@dataclass(frozen=True)
class SessionInfo:
    """A session as the admin's sessions page lists it (never its cookie or CSRF secret)."""

    id: int
    role: str
    billing_user: str | None
    actor: str
    token_id: int | None
    created_at: datetime
    last_seen: datetime
    expires_at: datetime


def digest(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


def create_session(conn: Connection, principal: WebPrincipal, *, lifetime: timedelta) -> str:
    """A new session for ``principal`` that lasts at most ``lifetime``; returns the cookie value (shown to the
    browser only, never stored)."""
    cookie = secrets.token_urlsafe(32)
    conn.execute(
        text("INSERT INTO api.console_session (sha256, role, token_id, billing_user, actor, csrf, expires_at)"
             " VALUES (:h, :r, :t, :u, :a, :c, now() + :life)"),
        {"h": digest(cookie), "r": principal.role, "t": principal.token_id, "u": principal.billing_user,
         "a": principal.actor, "c": secrets.token_urlsafe(32), "life": lifetime})
    return cookie


_LIVE = ("s.revoked_at IS NULL AND s.expires_at > now() AND s.last_seen > now() - :idle"
         " AND (s.token_id IS NULL OR EXISTS (SELECT 1 FROM api.token t WHERE t.id = s.token_id"
         "  AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())))")


def lookup(conn: Connection, cookie: str, *, idle: timedelta) -> Session | None:
    """The live session behind ``cookie`` (its ``last_seen`` moved to now), else None."""
    row = conn.execute(
        text("UPDATE api.console_session s SET last_seen = now()"  # noqa: S608 (constant clause)
             f" WHERE s.sha256 = :h AND {_LIVE} RETURNING s.id, s.role, s.billing_user, s.actor, s.token_id, s.csrf"),
        {"h": digest(cookie), "idle": idle}).one_or_none()
    if row is None:
        return None
    return Session(row[0], WebPrincipal(row[1], row[2], row[3], row[4]), row[5])


def revoke(conn: Connection, session_id: int) -> bool:
    """Revoke one session; False when there was no live one by that id."""
    return conn.execute(text("UPDATE api.console_session SET revoked_at = now() WHERE id = :i AND revoked_at IS NULL"),
                        {"i": session_id}).rowcount == 1


def list_live(conn: Connection, *, idle: timedelta) -> list[SessionInfo]:
    rows = conn.execute(
        text("SELECT s.id, s.role, s.billing_user, s.actor, s.token_id, s.created_at, s.last_seen, s.expires_at"  # noqa: S608 (constant clause)
             f" FROM api.console_session s WHERE {_LIVE} ORDER BY s.last_seen DESC"), {"idle": idle})
    return [SessionInfo(*r) for r in rows]
