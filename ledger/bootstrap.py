"""Roles and database, created on a superuser connection (the embedded default, tests, a first install).

``gpuledger_owner`` (NOLOGIN) owns the database and every object in it; ``gpuledger_app`` logs in and may
only SELECT and INSERT ledger tables; ``gpuledger_auditor`` may only SELECT. Running it again changes
nothing (passwords given again are set again).
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from ledger.errors import InvalidName
from ledger.migrate import OWNER_ROLE

APP_ROLE = "gpuledger_app"
AUDITOR_ROLE = "gpuledger_auditor"
DEFAULT_DATABASE = "gpuledger"


def _ensure_role(conn: Connection, role: str, login: bool, password: str | None) -> None:
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    options = "LOGIN" if login else "NOLOGIN"
    conn.execute(text(f'{"ALTER" if exists else "CREATE"} ROLE "{role}" {options}'))
    if password is not None:
        # ALTER ROLE takes no bind parameters; quote_literal on the server keeps the password out of our SQL text.
        literal = conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar()
        conn.execute(text(f'ALTER ROLE "{role}" PASSWORD {literal}'))


def bootstrap(
    superuser_url: str,
    database: str = DEFAULT_DATABASE,
    *,
    app_password: str | None = None,
    auditor_password: str | None = None,
    admin_role: str | None = None,
) -> str:
    """Create the three roles and ``database`` (owned by the owner role) if missing; return its admin URL.

    ``admin_role`` (optional) is made a member of the owner role so it can run migrations without being a
    superuser. The returned URL is ``superuser_url`` pointed at ``database``.
    """
    for kind, name in (("database", database), ("role", admin_role or "postgres")):
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise InvalidName(kind, name, "lower-case letters, digits and _ only")
    engine = create_engine(superuser_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            _ensure_role(conn, OWNER_ROLE, False, None)
            _ensure_role(conn, APP_ROLE, True, app_password)
            _ensure_role(conn, AUDITOR_ROLE, True, auditor_password)
            if admin_role:
                conn.execute(text(f'GRANT "{OWNER_ROLE}" TO "{admin_role}"'))
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).scalar():
                conn.execute(text(f'CREATE DATABASE "{database}" OWNER "{OWNER_ROLE}" ENCODING \'UTF8\''))
            conn.execute(text(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC'))
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{APP_ROLE}", "{AUDITOR_ROLE}"'))
    finally:
        engine.dispose()
    return make_url(superuser_url).set(database=database).render_as_string(hide_password=False)
