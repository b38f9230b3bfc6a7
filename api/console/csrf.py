"""CSRF: a synchronizer token on every form, checked on every POST.

A logged-in form carries its session's secret (api.console_session.csrf). A form shown before there is a
session (login, language and theme) carries the value of a pre-session cookie, which another site can neither
read (HttpOnly) nor send along (SameSite=Strict)."""

from __future__ import annotations

import hmac
import secrets

PRE_COOKIE = "gl_pre"
FIELD = "csrf"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def valid(sent: str | None, expected: str | None) -> bool:
    """Constant-time comparison; nothing sent or nothing expected is never valid."""
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent).encode(), str(expected).encode())
