"""The ledger's service layer: the one object the API, the CLI and the controller call.

Every admin operation runs in one write transaction together with its ``admin_audit`` row; an
idempotency conflict is counted (in its own transaction, since the operation's is rolled back) and then
raised to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ledger import auditlog, chain, directory, journal, operations, periods, prices, reports, usage, verify
from ledger.accounts import FUNDING_DEFAULT
from ledger.config import LedgerConfig
from ledger.db import create_app_engine, reading, translated, writing
from ledger.errors import ConfigError, IdempotencyConflict, LedgerError, NonPositiveAmount, UnknownUser
from ledger.exports import EXPORTERS, FORMATS
from ledger.exports.focus_file import FocusExporter
from ledger.money import available
from ledger.records import (
    Balance,
    ChainHead,
    Entry,
    NodeUserMapping,
    PostResult,
    PriceVersion,
    Project,
    RevenueRow,
    Statement,
    StatementPage,
    TickResult,
    TrialBalance,
    UsageRow,
    UsageTick,
    User,
    VerifyReport,
)
from ledger.tiers import Thresholds, tier_for

T = TypeVar("T")



class Unchanged(Enum):
    """The default of an ``update_user`` field that is to stay as it is (``None`` is a value there)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED

class Ledger:
    """Operations on one ledger database. ``Ledger(engine, config)`` borrows the engine; ``from_config``
    creates one, and then ``close()`` disposes of it."""

    def __init__(self, engine: Engine, config: LedgerConfig) -> None:
        self.engine = engine
        self.config = config
        self._book = prices.PriceBook()
        self._owns_engine = False

    @classmethod
    def from_config(cls, config: LedgerConfig, session_settings: Mapping[str, str] | None = None) -> Ledger:
        """``session_settings``: PostgreSQL settings for every connection (``create_app_engine``)."""
        ledger = cls(create_app_engine(config.database_url.reveal(), session_settings), config)
        ledger._owns_engine = True
        return ledger

    @classmethod
    def from_env(cls) -> Ledger:
        return cls.from_config(LedgerConfig.from_env(os.environ))

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------------------------

    @contextmanager
    def _write(self, idem_actor: str | None = None) -> Iterator[Connection]:
        try:
            with writing(self.engine) as conn:
                yield conn
        except IdempotencyConflict as exc:
            with writing(self.engine) as conn:
                conn.execute(
                    text("INSERT INTO ledger.idempotency_conflict (idem_key, existing_sha256, attempted_sha256, actor)"
                         " VALUES (:k, :old, :new, :actor)"),
                    {"k": exc.details["key"], "old": bytes.fromhex(exc.details["existing_sha256"]),
                     "new": bytes.fromhex(exc.details["attempted_sha256"]), "actor": idem_actor or "unknown"},
                )
            raise

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with reading(self.engine) as conn:
            return fn(conn)

    def _money(self, action: str, target_wallet: str | None, actor: str, request_id: str | None,
               run: Callable[[Connection], PostResult]) -> PostResult:
        with self._write(actor) as conn:
            before = operations.posting_sum(conn, target_wallet) if target_wallet else None
            result = run(conn)
            if result.created:
                after = operations.posting_sum(conn, target_wallet) if target_wallet else None
                auditlog.record(
                    conn, actor=actor, action=action, target=target_wallet or f"entry:{result.entry.ref_entry_id}",
                    before=None if before is None else {"available": available(before)},
                    after={"entry_id": result.entry.id, **({} if after is None else {"available": available(after)})},
                    request_id=request_id,
                )
            return result

    def _wallet(self, ref: str) -> str:
        return self._read(lambda conn: directory.wallet_of(conn, ref))

    # -- users, projects, node map -----------------------------------------------------------------------------

    def add_user(self, name: str, *, display_name: str = "", actor: str, request_id: str | None = None) -> User:
        with self._write(actor) as conn:
            user = directory.add_user(conn, name, display_name, self.config.currency)
            auditlog.record(conn, actor=actor, action="user.add", target=f"user:{name}", before=None,
                            after={"wallet": user.wallet, "display_name": display_name}, request_id=request_id)
            return user

    def get_user(self, name: str) -> User:
        return self._read(lambda conn: directory.get_user(conn, name))

    def list_users(self) -> list[User]:
        return self._read(directory.list_users)

    def _update_user(self, name: str, action: str, actor: str, request_id: str | None, **changes: Any) -> User:
        with self._write(actor) as conn:
            before, after = directory.update_user(conn, name, **changes)
            shown = {k: v for k, v in changes.items() if k != "project_id"}
            auditlog.record(conn, actor=actor, action=action, target=f"user:{name}",
                            before={k: getattr(before, k) for k in shown} | {"project": before.project},
                            after={k: getattr(after, k) for k in shown} | {"project": after.project},
                            request_id=request_id)
            return after

    def update_user(self, name: str, *, actor: str, request_id: str | None = None,
                    exempt: bool | Unchanged = UNCHANGED, credit_limit: int | None | Unchanged = UNCHANGED,
                    project: str | None | Unchanged = UNCHANGED) -> User:
        """Change the fields given, together: one transaction and one ``user.update`` audit row with the
        before and after of each. ``credit_limit`` is in micro-units; ``None`` clears it or the project."""
        changes: dict[str, Any] = {}
        if not isinstance(exempt, Unchanged):
            changes["exempt"] = exempt
        if not isinstance(credit_limit, Unchanged):
            changes["credit_limit"] = self._credit_limit(credit_limit)
        if not isinstance(project, Unchanged):
            changes["project_id"] = self._project_id(project)
        if not changes:
            return self.get_user(name)
        return self._update_user(name, "user.update", actor, request_id, **changes)

    def set_exempt(self, name: str, exempt: bool, *, actor: str, request_id: str | None = None) -> User:
        return self._update_user(name, "user.exempt", actor, request_id, exempt=exempt)

    def set_credit_limit(self, name: str, micro: int | None, *, actor: str, request_id: str | None = None) -> User:
        return self._update_user(name, "user.credit_limit", actor, request_id, credit_limit=self._credit_limit(micro))

    def assign_project(self, name: str, project: str | None, *, actor: str, request_id: str | None = None) -> User:
        return self._update_user(name, "user.project", actor, request_id, project_id=self._project_id(project))

    @staticmethod
    def _credit_limit(micro: int | None) -> int | None:
        if micro is not None and micro < 0:
            raise NonPositiveAmount(micro)
        return micro

    def _project_id(self, project: str | None) -> int | None:
        return self._read(lambda conn: directory.get_project(conn, project).id) if project else None

    def add_project(self, name: str, *, display_name: str = "", actor: str, request_id: str | None = None) -> Project:
        with self._write(actor) as conn:
            project = directory.add_project(conn, name, display_name, self.config.currency)
            auditlog.record(conn, actor=actor, action="project.add", target=f"project:{name}", before=None,
                            after={"wallet": project.wallet, "display_name": display_name}, request_id=request_id)
            return project

    def list_projects(self) -> list[Project]:
        return self._read(directory.list_projects)

    def map_linux_user(self, node: str, linux_user: str, user: str, *, actor: str,
                       request_id: str | None = None) -> NodeUserMapping:
        with self._write(actor) as conn:
            before, after = directory.set_mapping(conn, node, linux_user, user)
            auditlog.record(conn, actor=actor, action="user.map", target=f"node:{node}:{linux_user}",
                            before=None if before is None else {"user": before.user}, after={"user": after.user},
                            request_id=request_id)
            return after

    def list_mappings(self) -> list[NodeUserMapping]:
        return self._read(directory.list_mappings)

    # -- money ---------------------------------------------------------------------------------------------------

    def recharge(self, wallet: str, micro: int, *, idem_key: str, actor: str, memo: str = "",
                 channel: str = FUNDING_DEFAULT,
                 request_id: str | None = None) -> PostResult:
        code = self._wallet(wallet)
        return self._money("recharge", code, actor, request_id, lambda conn: operations.recharge(
            conn, code, micro, channel=channel, currency=self.config.currency, idem_key=idem_key, actor=actor,
            memo=memo, request_id=request_id))

    def grant(self, wallet: str, micro: int, *, expires_at: datetime | None, idem_key: str, actor: str,
              memo: str = "", request_id: str | None = None) -> PostResult:
        code = self._wallet(wallet)
        return self._money("grant", code, actor, request_id, lambda conn: operations.grant(
            conn, code, micro, expires_at=expires_at, currency=self.config.currency, idem_key=idem_key, actor=actor,
            memo=memo, request_id=request_id))

    def expire_grants(self, now: datetime | None = None, *, actor: str,
                      request_id: str | None = None) -> list[PostResult]:
        with self._write(actor) as conn:
            results = operations.expire_grants(conn, now or datetime.now(UTC), actor=actor, request_id=request_id)
            for r in results:
                auditlog.record(conn, actor=actor, action="grant.expire", target=f"entry:{r.entry.ref_entry_id}",
                                before=None, after={"entry_id": r.entry.id}, request_id=request_id)
            return results

    def adjust(self, wallet: str, micro: int, *, idem_key: str, actor: str, reason: str,
               counter: str = "adjustment", request_id: str | None = None) -> PostResult:
        code = self._wallet(wallet)
        return self._money(counter, code, actor, request_id, lambda conn: operations.adjust(
            conn, code, micro, counter=counter, currency=self.config.currency, idem_key=idem_key, actor=actor,
            reason=reason, request_id=request_id))

    def refund(self, entry_id: int, micro: int, *, idem_key: str, actor: str, reason: str,
               request_id: str | None = None) -> PostResult:
        return self._money("refund", None, actor, request_id, lambda conn: operations.refund(
            conn, journal.load_entry(conn, entry_id), micro, idem_key=idem_key, actor=actor, reason=reason,
            request_id=request_id))

    def reverse(self, entry_id: int, *, idem_key: str, actor: str, reason: str,
                request_id: str | None = None) -> PostResult:
        return self._money("reverse", None, actor, request_id, lambda conn: operations.reverse(
            conn, journal.load_entry(conn, entry_id), idem_key=idem_key, actor=actor, reason=reason,
            request_id=request_id))

    def entry(self, entry_id: int) -> Entry:
        return self._read(lambda conn: journal.load_entry(conn, entry_id))

    def idempotency_conflicts(self) -> int:
        return int(self._read(lambda conn: conn.execute(
            text("SELECT count(*) FROM ledger.idempotency_conflict")).scalar_one()))

    # -- prices and usage -----------------------------------------------------------------------------------------

    def add_price(self, resource: str, amount: Decimal, per: Decimal, *, model_pattern: str = "",
                  match: str = "exact", priority: int = 0, valid_from: datetime | None = None, actor: str,
                  memo: str = "", request_id: str | None = None) -> PriceVersion:
        with self._write(actor) as conn:
            version = prices.insert(conn, resource=resource, amount=amount, per=per, model_pattern=model_pattern,
                                    match=match, priority=priority, valid_from=valid_from or datetime.now(UTC),
                                    actor=actor, memo=memo)
            auditlog.record(conn, actor=actor, action="price.add", target=f"price:{version.id}", before=None,
                            after={"resource": resource, "model_pattern": model_pattern, "match": match,
                                   "priority": priority, "amount": amount, "per": per,
                                   "valid_from": version.valid_from}, request_id=request_id)
            return version

    def list_prices(self) -> list[PriceVersion]:
        return list(self._read(prices.load))

    def post_usage(self, tick: UsageTick) -> TickResult:
        """The controller's call: one node's tick in one transaction (docs/ledger.md, "The usage path")."""
        return self.post_usage_batch([tick])[0]

    def post_usage_batch(self, ticks: Sequence[UsageTick]) -> list[TickResult]:
        """Several ticks (e.g. a controller catching up after an outage) in one transaction."""
        with translated(), self.engine.begin() as conn:
            return usage.post_ticks(conn, ticks, self._book.current, self.config.currency)

    # -- balances and reports ---------------------------------------------------------------------------------------

    def balance(self, wallet: str, thresholds: Thresholds | None = None) -> Balance:
        """What a wallet holds (its grants included) and its tiers under ``thresholds`` (the configured ones
        when None); for a user, the tier uses their exemption and credit limit."""
        def run(conn: Connection) -> Balance:
            code, user = directory.wallet_owner(conn, wallet)
            held = available(reports.wallet_sum(conn, code))
            exempt, limit = (user.exempt, user.credit_limit) if user else (False, None)
            rule = thresholds or self.config.thresholds
            return Balance(code, held, tier_for(held, rule, exempt=exempt, credit_limit=limit),
                           tier_for(held, rule, credit_limit=limit), exempt, limit)
        return self._read(run)

    def standings(self, users: Sequence[str] | None = None, thresholds: Thresholds | None = None
                  ) -> dict[str, Balance]:
        """Per billing user: the balance and tiers of the wallet their usage is charged to, under ``thresholds``
        (default: the configured ones; the controller passes a settings version's), in one query (the
        controller's and the hooks' input). All users when ``users`` is None."""
        chosen = thresholds or self.config.thresholds
        return self._read(lambda conn: reports.standings(conn, users, chosen))

    def standing(self, name: str, thresholds: Thresholds | None = None) -> Balance:
        """One billing user's standing (as ``standings``): their project's wallet when they are charged to one."""
        found = self.standings([name], thresholds)
        if name not in found:
            raise UnknownUser(name)
        return found[name]

    def statement(self, wallet: str, start: date, end: date) -> Statement:
        return self._read(lambda conn: reports.statement(
            conn, directory.wallet_of(conn, wallet), start, end, self.config.timezone))

    def statement_page(self, wallet: str, start: date, end: date, *, limit: int, after: int | None = None,
                       before: int | None = None) -> StatementPage:
        return self._read(lambda conn: reports.statement_page(
            conn, directory.wallet_of(conn, wallet), start, end, self.config.timezone, limit=limit, after=after,
            before=before))

    def trial_balance(self, at: date | None = None) -> TrialBalance:
        return self._read(lambda conn: reports.trial_balance(conn, at, self.config.timezone))

    def usage_report(self, start: date, end: date, by: str = "user", resource: str | None = None) -> list[UsageRow]:
        return self._read(lambda conn: reports.usage(conn, start, end, by, self.config.timezone, resource))

    def revenue(self, start: date, end: date) -> list[RevenueRow]:
        return self._read(lambda conn: reports.revenue(conn, start, end, self.config.timezone))

    def export(self, fmt: str, out: IO[str], start: date | None = None, end: date | None = None) -> ChainHead | None:
        """Stream the ledger (or the entries effective in ``[start, end)``) to ``out`` in ``fmt``; returns the
        chain head the file carries (keep it: ``verify(anchor=...)``), None for ``focus`` (a cost report of the
        usage charges, not a copy of the ledger)."""
        if fmt not in FORMATS:
            raise LedgerError(f"export format must be one of {list(FORMATS)}", format=fmt)
        with reading(self.engine) as conn:
            if fmt == FocusExporter.name:
                FocusExporter(self.config.currency, self.config.timezone).write(conn, out, start, end)
                return None
            return EXPORTERS[fmt](self.config.currency, self.config.timezone).write(conn, out, start, end)

    # -- period close ----------------------------------------------------------------------------------------------

    def close_period(self, through: date, *, actor: str, reason: str) -> periods.PeriodClose:
        """Close every day up to ``through`` (local, ``GPULEDGER_TIMEZONE``): from then on nothing may be dated
        before the next day starts. The owner role's act: needs ``GPULEDGER_ADMIN_DATABASE_URL``."""
        if self.config.admin_database_url is None:
            raise ConfigError("GPULEDGER_ADMIN_DATABASE_URL", "closing a period is the owner role's act: set it to"
                                                              " a role that may SET ROLE gpuledger_owner")
        return periods.close(self.config.admin_database_url.reveal(), through, self.config.timezone, actor=actor,
                             reason=reason)

    def period_closes(self) -> list[periods.PeriodClose]:
        return self._read(periods.closes)

    def chain_head(self) -> ChainHead | None:
        """The newest block (None: nothing sealed yet): what the controller publishes as its anchor each tick."""
        return self._read(chain.head)

    def verify(self, anchor: tuple[int, str] | None = None, anchors: Sequence[chain.Anchor] = ()) -> VerifyReport:
        """Every check; ``anchor`` (seq, hex) and ``anchors`` are chain heads saved earlier that must still match."""
        saved = [*anchors, *([] if anchor is None else [chain.Anchor(anchor[0], anchor[1], "the anchor given")])]
        with reading(self.engine) as conn:
            return verify.run(conn, saved)
