"""``gpuledger api serve`` and ``gpuledger api token create|list|revoke`` (the first admin's bootstrap)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from api import audit, tokens
from api.config import ApiConfig
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.errors import LedgerError
from ledger.instants import instant
from ledger.tabular import Rendering, listing_options, render

ACTOR = "cli"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = subparsers.add_parser("api", help="the JSON API")
    sub = api.add_subparsers(dest="api_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser("serve", help="serve the API with uvicorn (GPULEDGER_API_HOST/PORT)")
    serve.set_defaults(func=_serve)
    token = sub.add_parser("token", help="bearer tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = tsub.add_parser("create", help="issue a token and print it once")
    create.add_argument("--role", required=True, choices=tokens.ROLES, help="what the token may do")
    create.add_argument("--name", required=True, help="who or what holds the token (shown in the audit log)")
    create.add_argument("--user", help="billing user (role user only)")
    create.add_argument("--expires", help="ISO 8601 time with zone")
    create.set_defaults(func=_create)
    listing = tsub.add_parser("list", help="list tokens (never the secrets)")
    listing_options(listing)
    listing.set_defaults(func=_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id", type=int, help="the token's id (from token list)")
    revoke.set_defaults(func=_revoke)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app_from_env

    try:
        config = ApiConfig.from_env(os.environ)
        app = create_app_from_env()
    except LedgerError as exc:
        print(f"gpuledger api: {exc.message}", file=sys.stderr)
        return 3
    uvicorn.run(app, **config.uvicorn_options(), log_level="info")
    return 0


def _engine() -> Engine:
    return create_app_engine(LedgerConfig.from_env(os.environ).database_url.reveal())


def _run(action: Callable[[Connection], int]) -> int:
    try:
        engine = _engine()
    except LedgerError as exc:
        print(f"gpuledger api: {exc.message}", file=sys.stderr)
        return 3
    try:
        with engine.begin() as conn:
            return action(conn)
    except LedgerError as exc:
        print(f"gpuledger api: {exc.message}", file=sys.stderr)
        return 2
    except IntegrityError as exc:
        print(f"gpuledger api: refused by the database: {exc.orig}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def _create(args: argparse.Namespace) -> int:
    if (args.role == "user") != (args.user is not None):
        print("gpuledger api: --user is required for role user and refused for the others", file=sys.stderr)
        return 2
    try:
        expires = datetime.fromisoformat(args.expires) if args.expires else None
    except ValueError:
        expires = None
    if args.expires and (expires is None or expires.tzinfo is None):
        print("gpuledger api: --expires must be an ISO 8601 time with a zone", file=sys.stderr)
        return 2

    def action(conn: Connection) -> int:
        issued = tokens.issue(conn, name=args.name, role=args.role, billing_user=args.user, expires_at=expires,
                              created_by=ACTOR)
        audit.record(conn, actor=ACTOR, action="token.create", target=f"token:{issued.info.id}", before=None,
                     after={"name": args.name, "role": args.role, "user": args.user}, request_id="cli")
        print(issued.token)
        print(f"token id {issued.info.id} ({args.role}); shown once, store it now", file=sys.stderr)
        return 0
    return _run(action)


def _list(args: argparse.Namespace) -> int:
    def action(conn: Connection) -> int:
        render(sys.stdout, Rendering.from_args(args), ("id", "prefix", "role", "user", "name", "state", "expires"),
               [(t.id, t.prefix, t.role, t.billing_user, t.name, "revoked" if t.revoked_at else "active",
                 instant(t.expires_at) if t.expires_at else None) for t in tokens.list_all(conn)])
        return 0
    return _run(action)


def _revoke(args: argparse.Namespace) -> int:
    def action(conn: Connection) -> int:
        before = tokens.get(conn, args.token_id)
        if before is None:
            print(f"gpuledger api: unknown token {args.token_id}", file=sys.stderr)
            return 2
        tokens.revoke(conn, args.token_id)
        audit.record(conn, actor=ACTOR, action="token.revoke", target=f"token:{args.token_id}",
                     before={"revoked_at": str(before.revoked_at)}, after={"revoked": True}, request_id="cli")
        return 0
    return _run(action)
