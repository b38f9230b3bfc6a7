"""The collector's Alembic chain (version table ``collector_alembic_version``)."""

from pathlib import Path

COLLECTOR_MIGRATIONS = Path(__file__).resolve().parent
COLLECTOR_VERSION_TABLE = "collector_alembic_version"


def upgrade_collector(admin_url: str) -> None:
    """The collector's chain to head; the ledger's chain must have run first."""
    from ledger.migrate import upgrade

    upgrade(admin_url, COLLECTOR_MIGRATIONS, COLLECTOR_VERSION_TABLE)
