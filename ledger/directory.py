"""Billing users, projects and the Linux-user map: the operational rows the ledger's wallets hang off."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.accounts import check_name, ensure_account, wallet_code
from ledger.errors import DuplicateName, UnknownProject, UnknownUser, UnknownWallet
from ledger.records import NodeUserMapping, Project, User
from ledger.text import check_text

_USER_SQL = """
SELECT u.id, u.name, u.display_name, a.code AS wallet, p.name AS project, u.exempt, u.credit_limit, u.created_at
  FROM ledger.billing_user u JOIN ledger.account a ON a.id = u.wallet_account_id
  LEFT JOIN ledger.project p ON p.id = u.project_id
"""
_PROJECT_SQL = """
SELECT p.id, p.name, p.display_name, a.code AS wallet, p.created_at
  FROM ledger.project p JOIN ledger.account a ON a.id = p.wallet_account_id
"""


def _user(row: Any) -> User:
    return User(id=int(row.id), name=row.name, display_name=row.display_name, wallet=row.wallet,
                project=row.project, exempt=bool(row.exempt), credit_limit=row.credit_limit,
                created_at=row.created_at)


def _project(row: Any) -> Project:
    return Project(id=int(row.id), name=row.name, display_name=row.display_name, wallet=row.wallet,
                   created_at=row.created_at)


def _add_wallet_holder(conn: Connection, kind: Literal["user", "project"], name: str, display_name: str,
                       currency: str) -> None:
    """A user or project row with its own new wallet account."""
    check_name(kind, name)
    check_text("display_name", display_name)
    table = "billing_user" if kind == "user" else "project"
    if conn.execute(text(f"SELECT 1 FROM ledger.{table} WHERE name = :n"), {"n": name}).first():  # noqa: S608
        raise DuplicateName(kind, name)
    wallet = ensure_account(conn, wallet_code(kind, name), currency)
    conn.execute(text(f"INSERT INTO ledger.{table} (name, display_name, wallet_account_id)"  # noqa: S608
                      " VALUES (:n, :d, :w)"), {"n": name, "d": display_name, "w": wallet})


def add_user(conn: Connection, name: str, display_name: str, currency: str) -> User:
    _add_wallet_holder(conn, "user", name, display_name, currency)
    return get_user(conn, name)


def get_user(conn: Connection, name: str) -> User:
    row = conn.execute(text(_USER_SQL + " WHERE u.name = :n"), {"n": name}).first()
    if row is None:
        raise UnknownUser(name)
    return _user(row)


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(text(_USER_SQL + " ORDER BY u.name"))]


def update_user(conn: Connection, name: str, **changes: Any) -> tuple[User, User]:
    """Apply column ``changes`` (display_name, project_id, exempt, credit_limit); returns (before, after)."""
    before = get_user(conn, name)
    sets = ", ".join(f"{column} = :{column}" for column in changes)
    conn.execute(text(f"UPDATE ledger.billing_user SET {sets} WHERE name = :name"), {**changes, "name": name})  # noqa: S608
    return before, get_user(conn, name)


def add_project(conn: Connection, name: str, display_name: str, currency: str) -> Project:
    _add_wallet_holder(conn, "project", name, display_name, currency)
    return get_project(conn, name)


def get_project(conn: Connection, name: str) -> Project:
    row = conn.execute(text(_PROJECT_SQL + " WHERE p.name = :n"), {"n": name}).first()
    if row is None:
        raise UnknownProject(name)
    return _project(row)


def list_projects(conn: Connection) -> list[Project]:
    return [_project(r) for r in conn.execute(text(_PROJECT_SQL + " ORDER BY p.name"))]


def set_mapping(conn: Connection, node: str, linux_user: str, user: str) -> tuple[NodeUserMapping | None,
                                                                                  NodeUserMapping]:
    """Map ``linux_user`` on ``node`` (``*``: every node) to billing ``user``; returns (before, after)."""
    target = get_user(conn, user)
    before = get_mapping(conn, node, linux_user)
    conn.execute(
        text("INSERT INTO ledger.node_user_map (node, linux_user, user_id) VALUES (:node, :lu, :uid)"
             " ON CONFLICT (node, linux_user) DO UPDATE SET user_id = excluded.user_id"),
        {"node": node, "lu": linux_user, "uid": target.id},
    )
    return before, NodeUserMapping(node, linux_user, user)


def get_mapping(conn: Connection, node: str, linux_user: str) -> NodeUserMapping | None:
    row = conn.execute(
        text("SELECT m.node, m.linux_user, u.name FROM ledger.node_user_map m"
             " JOIN ledger.billing_user u ON u.id = m.user_id WHERE m.node = :node AND m.linux_user = :lu"),
        {"node": node, "lu": linux_user},
    ).first()
    return None if row is None else NodeUserMapping(row.node, row.linux_user, row.name)


def list_mappings(conn: Connection) -> list[NodeUserMapping]:
    rows = conn.execute(text("SELECT m.node, m.linux_user, u.name FROM ledger.node_user_map m"
                             " JOIN ledger.billing_user u ON u.id = m.user_id ORDER BY m.node, m.linux_user"))
    return [NodeUserMapping(r.node, r.linux_user, r.name) for r in rows]


_RESOLVE = text("SELECT node, linux_user, user_name FROM ledger.billing_users(CAST(:pairs AS jsonb))")


def pairs_json(pairs: Sequence[tuple[str, str]]) -> str:
    """(node, Linux user) pairs as ``ledger.billing_users`` takes them: one JSON parameter (psycopg adapts text
    arrays element by element in Python, 10,000 pairs at 1,000 nodes)."""
    return json.dumps([{"node": node, "linux_user": linux_user} for node, linux_user in pairs])


def resolve(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(node, Linux user) -> the billing user they bill to, in one query: that node's mapping, else the ``*``
    mapping, else the billing user of the same name (SQL ``ledger.billing_users``, which the tick path's read
    uses too); pairs nobody answers to are absent."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows = conn.execute(_RESOLVE, {"pairs": pairs_json(wanted)})
    return {(row.node, row.linux_user): row.user_name for row in rows}


def wallet_ref(ref: str) -> tuple[str, str]:
    """``(owner, name)`` of ``user:NAME``, ``project:NAME`` or a bare user name (owner ``user``)."""
    owner, _, name = ref.partition(":") if ":" in ref else ("user", "", ref)
    return owner, name


def wallet_owner(conn: Connection, ref: str) -> tuple[str, User | None]:
    """The wallet account code named by ``user:NAME``, ``project:NAME`` or a bare user name, with the user
    who holds it (None for a project's), read once."""
    owner, name = wallet_ref(ref)
    if owner == "user":
        user = get_user(conn, name)
        return user.wallet, user
    if owner == "project":
        return get_project(conn, name).wallet, None
    raise UnknownWallet(ref)


def wallet_of(conn: Connection, ref: str) -> str:
    """The wallet account code named by ``user:NAME``, ``project:NAME`` or a bare user name."""
    return wallet_owner(conn, ref)[0]
