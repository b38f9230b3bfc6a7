"""Alembic, driven from code: one generic runner for every package's chain, and the ledger's own chain.

Each package keeps ``<pkg>/migrations/`` with an ``env.py`` that calls :func:`run_env`. Migrations run as
``gpuledger_owner`` (``SET ROLE``), so every object they create belongs to the NOLOGIN owner role, in one
transaction, serialised by an advisory lock so two starting processes cannot migrate at once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

OWNER_ROLE = "gpuledger_owner"
LEDGER_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LEDGER_VERSION_TABLE = "ledger_alembic_version"
# Any constant works; it only has to differ from the ledger writer lock (ledger.db.WRITER_LOCK).
_MIGRATION_LOCK = 0x67706D67


def _config(migrations_dir: Path, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["version_table"] = version_table
    return config


def upgrade(admin_url: str, migrations_dir: Path | str, version_table: str, revision: str = "head") -> None:
    """Run the chain in ``migrations_dir`` to ``revision`` on the database at ``admin_url``.

    ``admin_url`` must name a role that may ``SET ROLE gpuledger_owner`` (a superuser or a member).
    """
    config = _config(Path(migrations_dir), version_table)
    engine = create_engine(admin_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"SET LOCAL ROLE {OWNER_ROLE}"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current(admin_url: str, version_table: str) -> str | None:
    """The revision a chain is at, or None when it has never run."""
    engine = create_engine(admin_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT to_regclass(:t)"), {"t": version_table}).scalar()
            if exists is None:
                return None
            return connection.execute(text(f"SELECT version_num FROM {version_table}")).scalar()  # noqa: S608
    finally:
        engine.dispose()


def upgrade_ledger(admin_url: str) -> None:
    """The ledger's own chain to head; it runs before every other package's chain."""
    upgrade(admin_url, LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE)


def execute_sql_beside(migration_file: str) -> None:
    """Run the SQL file named like ``migration_file`` (a migration's ``__file__``) on the migration's connection.

    Straight to psycopg, not SQLAlchemy's ``text()``: the files hold several statements, dollar-quoted
    function bodies and ``:`` that ``text()`` would read as bind parameters.
    """
    driver = context.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on a live psycopg connection"
    driver.execute(Path(migration_file).with_suffix(".sql").read_text(encoding="utf-8"))


def run_env() -> None:
    """Body of every package's ``migrations/env.py``: migrate on the connection :func:`upgrade` opened."""
    attributes = context.config.attributes
    context.configure(
        connection=attributes["connection"],
        version_table=attributes["version_table"],
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
