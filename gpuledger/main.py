"""The commands that compose every package: ``gpuledger db upgrade`` and ``gpuledger run``.

``gpuledger run`` is the README's main job. Without ``GPULEDGER_DATABASE_URL`` it keeps a throwaway
PostgreSQL under ``var/pg`` (created on first use, kept between runs), bootstraps the roles and database,
migrates every chain to head, and runs the controller with this machine as its one node
(``ansible_connection=local``) next to the JSON API on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuledger.cli import import_optional
from ledger.environ import Config
from ledger.migrate import LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE, upgrade

# Ledger first: the other chains reference its tables. Control after api: its first revision moves the tables
# the api chain created (control/migrations/versions/0001_control.py).
CHAINED_PACKAGES = ("collector", "api", "control")


def migration_chains() -> list[tuple[str, Path, str]]:
    """(package, migrations dir, version table) of every chain present, in the order they must run."""
    chains = [("ledger", LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE)]
    for package in CHAINED_PACKAGES:
        module = import_optional(package)
        if module is None:
            continue
        migrations = Path(module.__path__[0]) / "migrations"
        if (migrations / "env.py").exists():
            chains.append((package, migrations, f"{package}_alembic_version"))
    return chains


def upgrade_all(admin_url: str, out: Callable[[str], None] = print) -> None:
    for package, migrations, version_table in migration_chains():
        upgrade(admin_url, migrations, version_table)
        out(f"migrated {package} to head")


@dataclass(frozen=True)
class Database:
    """Where the main job's data lives: the app role's URL and the URL migrations run with."""

    app_url: str
    admin_url: str
    embedded: bool


@contextmanager
def database(var_dir: Path, environ: dict[str, str], out: Callable[[str], None], port: int = 0) -> Iterator[Database]:
    """The configured database, or the embedded one under ``var_dir`` on ``port`` (0: a free one), stopped again
    on exit."""
    url = _setting(environ, "DATABASE_URL")
    if url:
        admin = _setting(environ, "ADMIN_DATABASE_URL") or url
        yield Database(app_url=url, admin_url=admin, embedded=False)
        return
    from ledger.bootstrap import APP_ROLE, DEFAULT_DATABASE, bootstrap
    from ledger.embedded import EmbeddedPostgres

    cluster = EmbeddedPostgres(var_dir / "pg", port=port).start()
    out(f"embedded PostgreSQL in {cluster.datadir} on 127.0.0.1:{cluster.port}")
    try:
        admin_url = bootstrap(cluster.url())
        yield Database(app_url=cluster.url(user=APP_ROLE, database=DEFAULT_DATABASE), admin_url=admin_url,
                       embedded=True)
    finally:
        cluster.stop()
        out("embedded PostgreSQL stopped")


def _setting(environ: dict[str, str], name: str) -> str | None:
    """A database URL from ``GPULEDGER_<name>`` or the file ``GPULEDGER_<name>_FILE`` names (the one reader,
    ``ledger.environ``); None when unset or empty."""
    secret = Config(environ).secret(name)
    return (secret.reveal() or None) if secret is not None else None


def _local_inventory(var_dir: Path) -> Path:
    inventory = var_dir / "inventory.ini"
    if not inventory.exists():
        inventory.write_text(
            "# Written by `gpuledger run` for the embedded default: this machine is the one node.\n"
            "[nodes]\nlocalhost ansible_connection=local\n"
        )
    return inventory


def _serve_api(app_url: str, environ: dict[str, str], out: Callable[[str], None]) -> Callable[[], None]:
    """Start the JSON API in a thread next to the controller; returns a function that stops it."""
    import uvicorn

    from api.app import create_app_from_env
    from api.config import ApiConfig

    env = {**environ, "GPULEDGER_DATABASE_URL": app_url}
    config = ApiConfig.from_env(env)
    server = uvicorn.Server(uvicorn.Config(create_app_from_env(env), **config.uvicorn_options(),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="gpuledger-api", daemon=True)
    thread.start()
    out(f"API on {config.console_url}v1/ (docs: {config.console_url}docs)")
    out(f"Console: {config.console_url}  (admins: paste a token from `gpuledger api token create --role admin`,"
        " with var/env loaded; users: on a node, `gpuledger-balance --web CODE` with the code the login page"
        " shows)")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


def run(args: argparse.Namespace) -> int:
    from collector.app import run_controller

    environ = dict(os.environ)
    var_dir = Path(args.var).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    # the controller's chain anchors (collector/anchor.py) stay with the rest of this run's state
    environ.setdefault("GPULEDGER_ANCHOR_FILE", str(var_dir / "chain-anchors"))
    out = print
    with database(var_dir, environ, out, port=args.db_port) as db:
        upgrade_all(db.admin_url, out)
        if db.embedded:
            # Other gpuledger commands in another terminal reach the same embedded database through these.
            (var_dir / "env").write_text(
                f"GPULEDGER_DATABASE_URL={db.app_url}\nGPULEDGER_ADMIN_DATABASE_URL={db.admin_url}\n")
            out(f"for other commands: set -a; . {var_dir / 'env'}; set +a")
        if args.migrate_only:
            return 0
        if args.db_only:
            return _hold(out)
        inventory = Path(environ["GPULEDGER_INVENTORY"]) if environ.get("GPULEDGER_INVENTORY") else (
            _local_inventory(var_dir))
        stop_api = None if args.no_api else _serve_api(db.app_url, environ, out)
        try:
            return run_controller(db.app_url, inventory, environ=environ, tick_s=args.tick_seconds,
                                  ticks=args.ticks)
        finally:
            if stop_api is not None:
                stop_api()


def _hold(out: Callable[[str], None]) -> int:
    """Keep the database up (``--db-only``) until Ctrl-C or SIGTERM; the caller's context then stops it."""
    stopped = threading.Event()
    # Left in place when this returns: a second SIGTERM (a supervisor and its child both signalled) must not
    # kill the process while the caller is still stopping the database.
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    out("database only: Ctrl-C or SIGTERM stops it")
    try:
        while not stopped.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    return 0


def db_upgrade(args: argparse.Namespace) -> int:
    admin_url = _setting(dict(os.environ), "ADMIN_DATABASE_URL") or _setting(dict(os.environ), "DATABASE_URL")
    if not admin_url:
        print("gpuledger db upgrade: set GPULEDGER_ADMIN_DATABASE_URL (a role that may SET ROLE gpuledger_owner)",
              file=sys.stderr)
        return 3
    upgrade_all(admin_url)
    return 0


def register(subparsers: Any) -> None:
    run_parser = subparsers.add_parser("run", help="the main job: controller and API (embedded database by default)")
    run_parser.add_argument("--var", default="var", help="state directory of the embedded default (default: var)")
    run_parser.add_argument("--tick-seconds", type=float, default=None, help="override GPULEDGER_TICK_SECONDS")
    run_parser.add_argument("--ticks", type=int, default=None, help="stop after this many ticks (default: run on)")
    run_parser.add_argument("--no-api", action="store_true", help="run the controller only")
    run_parser.add_argument("--migrate-only", action="store_true",
                            help="prepare and migrate the database, write var/env, then exit")
    run_parser.add_argument("--db-only", action="store_true",
                            help="prepare, migrate and keep the embedded database running (no controller, no API)")
    run_parser.add_argument("--db-port", type=int, default=0, metavar="PORT",
                            help="the embedded database's port on 127.0.0.1 (default: a free one)")
    run_parser.set_defaults(func=run)

    db_parser = subparsers.add_parser("db", help="database schema")
    db_sub = db_parser.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    db_sub.add_parser("upgrade", help="every package's migrations to head (ledger first)").set_defaults(
        func=db_upgrade)
