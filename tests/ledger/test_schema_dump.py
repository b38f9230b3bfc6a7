"""The checked-in ``<package>/schema/current.sql`` files are what the migrations produce at head."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gpuledger.main import migration_chains
from ledger.embedded import EmbeddedPostgres
from ledger.schema.dump import COMMAND, dump_chains, dump_schema, normalise, target

ROOT = Path(__file__).resolve().parents[2]
CHAINS = migration_chains()


@pytest.fixture(scope="module")
def migrated(pg_cluster: EmbeddedPostgres) -> Iterator[tuple[str, dict[Path, str]]]:
    """A fresh database with every chain at head, and the dumps made of it exactly as the command makes them."""
    name = f"schema_dump_{uuid.uuid4().hex[:8]}"
    dumps = dump_chains(pg_cluster, name, CHAINS)
    yield pg_cluster.url(database=name), dumps
    engine = create_engine(pg_cluster.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.mark.parametrize("migrations", [m for _, m, _ in CHAINS], ids=[p for p, _, _ in CHAINS])
def test_checked_in_schema_matches_the_migrations(migrated: tuple[str, dict[Path, str]], migrations: Path) -> None:
    path = target(migrations)
    fresh = migrated[1][path]
    kept = path.read_text(encoding="utf-8") if path.exists() else ""
    diff = "".join(difflib.unified_diff(kept.splitlines(keepends=True), fresh.splitlines(keepends=True),
                                        f"{path.relative_to(ROOT)} (checked in)", "migrated to head"))
    if diff:
        pytest.fail(f"{path.relative_to(ROOT)} is out of date: run {COMMAND}\n{diff}", pytrace=False)


def test_a_schema_change_shows_in_the_dump(migrated: tuple[str, dict[Path, str]],
                                           pg_cluster: EmbeddedPostgres) -> None:
    url, dumps = migrated
    assert pg_cluster.bindir is not None
    before = dump_schema(pg_cluster.bindir / "pg_dump", url, "ledger")
    assert dumps[target(CHAINS[0][1])].endswith(before)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE FUNCTION ledger.drift() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$"))
    try:
        after = dump_schema(pg_cluster.bindir / "pg_dump", url, "ledger")
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP FUNCTION ledger.drift()"))
        engine.dispose()
    assert "CREATE FUNCTION ledger.drift() RETURNS integer" in after
    assert after != before


def test_normalise_drops_what_is_not_schema_and_keeps_bodies() -> None:
    raw = (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "\\restrict AbC123\n\n"
        "-- Dumped from database version 15.18\n-- Dumped by pg_dump version 15.18\n\n"
        "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n"
        "--\n-- Name: f(); Type: FUNCTION; Schema: ledger; Owner: -\n--\n\n"
        "CREATE FUNCTION ledger.f() RETURNS void\n    LANGUAGE plpgsql\n    SET search_path TO 'ledger'\n"
        "    AS $$\nBEGIN\n    -- why the body does this\n    PERFORM 1;\nEND $$;\n\n\n\n"
        "--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict AbC123\n"
    )
    assert normalise(raw) == (
        "CREATE FUNCTION ledger.f() RETURNS void\n    LANGUAGE plpgsql\n    SET search_path TO 'ledger'\n"
        "    AS $$\nBEGIN\n    -- why the body does this\n    PERFORM 1;\nEND $$;\n"
    )
