"""The control package's Alembic chain (version table ``control_alembic_version``)."""

from pathlib import Path

CONTROL_MIGRATIONS = Path(__file__).resolve().parent
CONTROL_VERSION_TABLE = "control_alembic_version"


def upgrade_control(admin_url: str) -> None:
    """The control chain to head; the ledger's and the api's chains must have run first (0001 moves the api's
    tables)."""
    from ledger.migrate import upgrade

    upgrade(admin_url, CONTROL_MIGRATIONS, CONTROL_VERSION_TABLE)
