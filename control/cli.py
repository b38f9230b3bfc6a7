"""``gpuledger queue list|show|boost|cancel|extend|approve|idle-report``: the GPU queue for admins at a shell
(docs/queue.md, "API, CLI and console"), through ``control.queue.admin``, the functions the API and the console
call, so each action is one ``control.queue_action`` row with its actor and reason whichever door it came
through. The policy (the admin boost cap, the maximum hours) is the settings version in force, as the API's.

The actor is ``cli:LOGIN``, LOGIN the account the kernel says runs the command (its real uid), or under sudo
the account sudo ran it for (``SUDO_UID``, which sudo sets): never a name typed on the command line.

Exit status: 0 ok, 2 bad input or a refused operation (the message says which), 3 no database configured or
reachable.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.engine import Connection

from control import versions
from control.queue import admin, store
from control.queue.intake import Refused
from control.queue.records import Policy, State
from control.settings import in_force
from ledger.config import LedgerConfig
from ledger.db import create_app_engine, translated
from ledger.errors import ConfigError, LedgerError, LedgerUnavailable
from ledger.instants import instant
from ledger.tabular import Cell, Rendering, listing_options, render

OK, BAD_INPUT, UNAVAILABLE = 0, 2, 3
COLUMNS = ("id", "user", "project", "state", "models", "count", "hours", "node", "position", "eta", "eta basis",
           "gpus", "boost hours", "offer expires", "ends", "ended at", "reason")
ACTION_COLUMNS = ("id", "action", "actor", "reason", "before", "after", "at")

Action = Callable[[Connection, LedgerConfig, argparse.Namespace], int]


def login() -> str:
    """Who runs this command, by the kernel's word (module docstring)."""
    uid = os.getuid()
    behind_sudo = os.environ.get("SUDO_UID", "")
    if uid == 0 and behind_sudo.isdigit():
        uid = int(behind_sudo)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:   # an account without a passwd entry (a container's): its uid is still its identity
        return str(uid)


def _actor() -> str:
    return f"cli:{login()}"


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    """Wrap an action: one transaction on the app role; errors become messages and exit codes."""
    def run(args: argparse.Namespace) -> int:
        try:
            config = LedgerConfig.from_env(os.environ)
            engine = create_app_engine(config.database_url.reveal())
        except ConfigError as exc:
            return _fail(exc.message, UNAVAILABLE)
        try:
            with translated(), engine.begin() as conn:
                return action(conn, config, args)
        except LedgerUnavailable as exc:
            return _fail(exc.message, UNAVAILABLE)
        except (store.QueueError, Refused, LedgerError) as exc:
            return _fail(str(exc), BAD_INPUT)
        finally:
            engine.dispose()
    return run


def _fail(message: str, status: int) -> int:
    print(f"gpuledger queue: {message}", file=sys.stderr)
    return status


def _policy(conn: Connection, config: LedgerConfig) -> Policy:
    return in_force(versions.newest(conn), config.thresholds).queue_policy()


def _when(t: datetime | None) -> str | None:
    return None if t is None else instant(t)


def _row(s: admin.Shown) -> list[Cell]:
    r, st = s.request, s.standing
    return [r.id, r.user, r.project, r.state.value, ",".join(sorted(r.models)) or "any", r.count, r.hours, r.node,
            st.position, _when(st.eta), st.basis or None, ",".join(f"{g.node}:{g.index}" for g in r.gpus) or None,
            r.boost_hours, _when(r.offer_expires), _when(r.ends), _when(st.ended_at), r.reason or None]


def _show(args: argparse.Namespace, columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
    render(sys.stdout, Rendering.from_args(args), columns, rows)


def _key(args: argparse.Namespace) -> str | None:
    """The action's idempotency key, namespaced by door as the API's and the console's are."""
    return None if args.key is None else f"cli:{args.key}"


def _now() -> datetime:
    return datetime.now(UTC)


# -- actions ----------------------------------------------------------------------------------------------------

def queue_list(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    found = admin.listing(conn, now=_now(), user=a.user, state=State(a.state) if a.state else None, model=a.model,
                          node=a.node)
    _show(a, COLUMNS, [_row(s) for s in admin.shown(conn, found)])
    return OK


def _action_row(x: admin.Action) -> list[Cell]:
    after = {k: v for k, v in x.after.items() if k != "asked"}
    return [x.id, x.action, x.actor, x.reason, json.dumps(dict(x.before), sort_keys=True),
            json.dumps(after, sort_keys=True), instant(x.at)]


def queue_show(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    found = store.get(conn, a.id)
    if found is None:
        raise store.UnknownRequest(a.id)
    [shown] = admin.shown(conn, [found])
    acts = [_action_row(x) for x in admin.actions(conn, a.id)]
    how = Rendering.from_args(a)
    if how.format == "json":   # one document: the request with its actions
        keys = [c.replace(" ", "_") for c in COLUMNS]
        request = {k: v if v is None or isinstance(v, str | int) else str(v) for k, v in zip(keys, _row(shown),
                                                                                                strict=True)}
        actions = [dict(zip(ACTION_COLUMNS, row, strict=True)) for row in acts]
        json.dump({**request, "actions": actions}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return OK
    # table and csv: the request as field, value lines, then its actions
    render(sys.stdout, how, ("field", "value"), list(zip(COLUMNS, _row(shown), strict=True)))
    print()
    render(sys.stdout, how, ACTION_COLUMNS, acts)
    return OK


def _acted(conn: Connection, action: admin.Action) -> int:
    state = "already recorded (nothing changed)" if action.replayed else "recorded"
    after = {k: v for k, v in action.after.items() if k != "asked"}
    print(f"{action.action} of request {action.request_id} {state} as action {action.id} by {action.actor}:"
          f" {json.dumps(dict(action.before), sort_keys=True)} -> {json.dumps(after, sort_keys=True)}")
    return OK


def queue_boost(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    return _acted(conn, admin.boost(conn, a.id, a.hours, actor=_actor(), reason=a.reason,
                                    policy=_policy(conn, config), now=_now(), key=_key(a)))


def queue_cancel(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    return _acted(conn, admin.cancel_as(conn, a.id, actor=_actor(), reason=a.reason, now=_now(), key=_key(a)))


def queue_extend(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    return _acted(conn, admin.extend(conn, a.id, a.hours, actor=_actor(), reason=a.reason,
                                     policy=_policy(conn, config), now=_now(), key=_key(a)))


def queue_approve(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    return _acted(conn, admin.approve(conn, a.id, actor=_actor(), reason=a.reason, now=_now(), key=_key(a)))


def queue_idle_report(conn: Connection, config: LedgerConfig, a: argparse.Namespace) -> int:
    week = admin.idle_week(conn, a.week, zone=config.timezone, now=_now())
    _show(a, ("user", "idle gpu hours", "from", "to"),
          [(user, hours, instant(week.start), instant(week.end)) for user, hours in sorted(week.hours.items())])
    return OK


# -- argument types and the parser ------------------------------------------------------------------------------

def _hours(text: str) -> Decimal:
    """A lease extension: decimal hours above 0 with at most 2 decimals (as a request's hours)."""
    try:
        hours = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not hours.is_finite() or hours <= 0 or hours != hours.quantize(Decimal("0.01")):
        raise argparse.ArgumentTypeError(f"hours must be above 0 with at most 2 decimals: {text!r}")
    return hours


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _reason(text: str) -> str:
    # control.queue_action's own check: a reason is 1-500 characters
    if not text.strip() or len(text) > 500:
        raise argparse.ArgumentTypeError("a reason is 1 to 500 characters")
    return text


def _command(sub: Any, name: str, action: Action, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=_run(action))
    return parser


def _admin_action(sub: Any, name: str, action: Action, help_text: str, hours: str | None = None) -> None:
    parser = _command(sub, name, action, help_text)
    parser.add_argument("id", type=int, help="the request's id (from queue list)")
    if hours is not None:
        parser.add_argument("hours", type=int if name == "boost" else _hours, help=hours)
    parser.add_argument("--reason", required=True, type=_reason, help="why (recorded with the action; the user"
                        " sees a cancel's)")
    parser.add_argument("--key", help="an idempotency key: the same command again with it changes nothing")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = subparsers.add_parser("queue", help="the GPU queue: list, show and act on requests, the idle report")
    sub = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    listing = _command(sub, "list", queue_list, "live requests (with --user: also theirs ended in the last 7 days)")
    listing.add_argument("--user", help="one billing user's")
    listing.add_argument("--state", choices=[s.value for s in State], help="in this state")
    listing.add_argument("--model", help="that a GPU of this model would serve")
    listing.add_argument("--node", help="asking for, or holding GPUs on, this node")
    listing_options(listing)
    show = _command(sub, "show", queue_show, "one request, with its admin actions")
    show.add_argument("id", type=int, help="the request's id")
    listing_options(show)
    _admin_action(sub, "boost", queue_boost, "set a queued or offered request's boost (hours of waiting added"
                  " to its priority, at most the policy's admin boost cap)", "the boost in whole hours")
    _admin_action(sub, "cancel", queue_cancel, "end any live request")
    _admin_action(sub, "extend", queue_extend, "move a grant's end later (refused while someone waits for its"
                  " GPUs)", "hours to add")
    _admin_action(sub, "approve", queue_approve, "claim an offer on its user's behalf: a grant at once")
    idle = _command(sub, "idle-report", queue_idle_report, "idle-held GPU-hours per user over one week (Monday to"
                    " Monday in GPULEDGER_TIMEZONE)")
    idle.add_argument("--week", type=_day, help="any local day of the week (default: this week, so far)")
    listing_options(idle)
