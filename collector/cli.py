"""``gpuledger controller run`` and ``gpuledger nodes trust|list|test`` (composed by gpuledger/cli.py).

Exit status: 0 ok, 1 the node or check failed, 2 bad input or configuration, 3 database unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from collector.app import Runtime, printer, serve, tune_gc
from collector.config import ControllerConfig
from collector.errors import CollectorError, HostKeyError, NodeUnavailable
from collector.logs import configure
from collector.nodes.inventory import load_inventory
from collector.nodes.knownhosts import fingerprint, pin
from collector.nodes.registry import list_nodes
from collector.nodes.transport.local import LocalTransport
from collector.nodes.transport.ssh import SshSettings, SshTransport, offered_host_key
from collector.types import Node
from ledger.config import LedgerConfig
from ledger.errors import ConfigError, LedgerError
from ledger.instants import instant
from ledger.tabular import Rendering, listing_options, render


def register(subparsers: Any) -> None:
    controller = subparsers.add_parser("controller", help="the tick loop")
    controller_sub = controller.add_subparsers(dest="controller_command", metavar="COMMAND", required=True)
    run = controller_sub.add_parser("run", help="sample, charge and enforce every GPULEDGER_TICK_SECONDS")
    run.add_argument("--ticks", type=int, default=None, help="stop after this many ticks (default: run until stopped)")
    run.add_argument("--dry-run", action="store_true", help="decide and record, but run no enforcement verb")
    run.set_defaults(func=_run)

    nodes = subparsers.add_parser("nodes", help="the node registry and host keys")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", metavar="COMMAND", required=True)
    trust = nodes_sub.add_parser("trust", help="pin a node's SSH host key in GPULEDGER_KNOWN_HOSTS")
    trust.add_argument("host", help="the node's inventory name")
    trust.add_argument("--fingerprint", help="pin only if the node offers this SHA256:... fingerprint (verified"
                       " out of band)")
    trust.add_argument("--yes", action="store_true", help="pin what the node offers without asking")
    trust.add_argument("--replace", action="store_true", help="replace a different key already pinned")
    trust.set_defaults(func=_trust)
    listing = nodes_sub.add_parser("list", help="the registry: status, last seen, region, GPUs")
    listing_options(listing)
    listing.set_defaults(func=_list)
    test = nodes_sub.add_parser("test", help="connect to a node (verifying its key) and run the version verb")
    test.add_argument("host", help="the node's inventory name")
    test.set_defaults(func=_test)


def _fail(message: str, status: int) -> int:
    print(f"gpuledger: {message}", file=sys.stderr)
    return status


def _config() -> ControllerConfig:
    return ControllerConfig.from_env(os.environ)


def _node(config: ControllerConfig, host: str) -> Node:
    for node in load_inventory(config.inventory):
        if node.name == host:
            return node
    raise ConfigError("GPULEDGER_INVENTORY", f"has no host named {host!r}")


def _run(args: argparse.Namespace) -> int:
    try:
        config = _config()
        if args.dry_run:
            config = dataclasses.replace(config, dry_run=True)
        ledger_config = LedgerConfig.from_env(os.environ)
        load_inventory(config.inventory)
    except (CollectorError, LedgerError) as exc:
        return _fail(str(exc), 2)
    configure()
    runtime = Runtime(config, ledger_config)
    tune_gc()
    return asyncio.run(serve(runtime, printer(ledger_config.currency), ticks=args.ticks))


def _trust(args: argparse.Namespace) -> int:
    try:
        config = _config()
        node = _node(config, args.host)
    except (CollectorError, ConfigError) as exc:
        return _fail(str(exc), 2)
    if node.local:
        return _fail(f"{node.name} is the local node (ansible_connection=local): no host key to pin", 2)
    try:
        key = asyncio.run(offered_host_key(node, config.connect_timeout_s))
    except NodeUnavailable as exc:
        return _fail(str(exc), 1)
    offered = fingerprint(key)
    print(f"{node.name} ({node.address}:{node.port}) offers {key.get_algorithm()} {offered}")
    if args.fingerprint is not None and args.fingerprint != offered:
        return _fail(f"refusing: expected {args.fingerprint}, the node offers {offered}", 1)
    if args.fingerprint is None and not args.yes:
        if not sys.stdin.isatty():
            return _fail("refusing to pin without confirmation: pass --fingerprint SHA256:... or --yes", 2)
        if input("Pin this key? Type 'yes': ").strip() != "yes":
            return _fail("not pinned", 1)
    try:
        result = pin(config.known_hosts, node.address, node.port, key, replace=args.replace)
    except HostKeyError as exc:
        return _fail(str(exc), 1)
    print(f"{result.action}: {result.host} {result.fingerprint} in {config.known_hosts}")
    return 0


def _list(args: argparse.Namespace) -> int:
    # The registry is in the database: listing it needs the database URL only, not the controller's inventory.
    try:
        url = LedgerConfig.from_env(os.environ).database_url
    except (CollectorError, LedgerError) as exc:
        return _fail(str(exc), 2)
    engine = create_engine(url.reveal())
    try:
        with engine.connect() as conn:
            rows = list_nodes(conn)
    except DBAPIError as exc:
        return _fail(f"database unreachable: {type(exc.orig).__name__}", 3)
    finally:
        engine.dispose()
    table = []
    for row in rows:
        seen = instant(row.last_seen_at) if row.last_seen_at else None
        listed = "yes" if row.listed and row.in_inventory else ("gone" if not row.in_inventory else "no")
        # a node's error text is escaped in every format, so it cannot drive the terminal that shows it
        error = ascii(row.last_error)[1:-1][:60] if row.last_error else ""
        never = "never" if args.format == "table" else None  # people read a word, programs a null
        table.append((row.name, row.status, seen or never, row.region, row.gpus, listed, error))
    render(sys.stdout, Rendering.from_args(args), ("node", "status", "last seen", "region", "gpus", "listed", "error"),
           table)
    return 0


def _test(args: argparse.Namespace) -> int:
    try:
        config = _config()
        node = _node(config, args.host)
    except (CollectorError, ConfigError) as exc:
        return _fail(str(exc), 2)

    async def check() -> int:
        transport = (
            LocalTransport(config.local_node_command) if node.local
            else SshTransport(SshSettings(config.ssh_key, config.known_hosts, config.connect_timeout_s,
                                          config.connect_timeout_s))
        )
        try:
            session = await transport.session(node)
            result = await session.run(["version"], timeout_s=config.command_timeout_s)
        except NodeUnavailable as exc:
            return _fail(f"{node.name}: {exc.outcome}: {exc.detail}", 1)
        finally:
            await transport.aclose()
        print(f"{node.name}: exit {result.exit_status} in {result.elapsed_s * 1000:.0f} ms")
        print(result.stdout.decode("utf-8", "replace").strip())
        return 0 if result.ok else 1

    try:
        return asyncio.run(check())
    except ConfigError as exc:
        return _fail(str(exc), 2)
