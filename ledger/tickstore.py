"""The tick path's SQL (ledger.usage drives it; ledger.tickplan decides): three statements on the caller's raw
psycopg connection. Rows travel as one JSON parameter each way: psycopg's per-element array adaptation cost more
than the database work.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from ledger import directory, tickdoc
from ledger.tickdoc import PostUsageDocument
from ledger.tickplan import KEY_SEPARATOR, Conflict, GrantLeft, LedgerRead, Resolved, Stored

Pg = psycopg.Connection[Any]

# ``held``: the billing users reservation records name, by name (a grant is to a billing user), with the wallet
# their charges go to by the rule ledger.billing_users applies: their project's when they are in one.
_READ_SQL = """
WITH resolved AS (SELECT * FROM ledger.billing_users(%(users)s::jsonb)),
held AS (SELECT bu.id, bu.name, w.id AS wallet_account_id, w.code
           FROM ledger.billing_user bu LEFT JOIN ledger.project p ON p.id = bu.project_id
           JOIN ledger.account w ON w.id = coalesce(p.wallet_account_id, bu.wallet_account_id)
          WHERE bu.name = ANY(string_to_array(%(holders)s, E'\\x1f')))
SELECT (SELECT coalesce(max(id), 0) FROM ledger.price_version),
       (SELECT coalesce(max(id), 0) FROM ledger.usage),
       (SELECT coalesce(max(id), 0) FROM ledger.journal_entry),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(u.idem_key, encode(u.payload_sha256, 'hex'), u.id, u.amount,
                                                    (SELECT e.id FROM ledger.journal_entry e WHERE e.usage_id = u.id),
                                                    (SELECT bu.name FROM ledger.billing_user bu WHERE bu.id = u.user_id)
                                                    )), '[]')
          -- a lateral lookup per key: with a long key list the planner would otherwise scan the whole table
          FROM unnest(string_to_array(%(keys)s, E'\\x1f')) AS k(key)
          JOIN LATERAL (SELECT * FROM ledger.usage WHERE idem_key = k.key) u ON true),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(node, linux_user, user_id, user_name, wallet_account_id,
                                                    wallet_code)), '[]') FROM resolved),
       ledger.wallet_grants(ARRAY(SELECT wallet_account_id FROM resolved UNION SELECT wallet_account_id FROM held
                                  ORDER BY 1)),
       (SELECT max(closed_before) FROM ledger.period_close),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(id, name, wallet_account_id, code)), '[]') FROM held)
"""

_STATE_SQL = """
WITH want AS (SELECT code FROM jsonb_array_elements_text(%(codes)s::jsonb) AS w(code)),
ins AS (INSERT INTO ledger.account (code, kind, currency)
        SELECT code, 'revenue', %(currency)s FROM want ON CONFLICT (code) DO NOTHING RETURNING id, code)
SELECT (SELECT coalesce(jsonb_agg(jsonb_build_array(code, id)), '[]')
          FROM (SELECT id, code FROM ins UNION ALL SELECT a.id, a.code FROM ledger.account a JOIN want USING (code)) c),
       ledger.epoch_state(%(pairs)s::jsonb)
"""


def read(pg: Pg, keys: Sequence[str], pairs: Sequence[tuple[str, str]], holders: Sequence[str] = ()) -> LedgerRead:
    """One statement, the first of the transaction (its BEGIN goes out with it: one round trip): what is
    recorded under ``keys``, who the ``pairs`` bill to, which of ``holders`` (billing user names) exist, their
    wallets' grants, and the marks."""
    with pg.pipeline():
        cursor = pg.execute(_READ_SQL, {"keys": KEY_SEPARATOR.join(keys), "users": directory.pairs_json(pairs),
                                        "holders": KEY_SEPARATOR.join(holders)})
    row = cursor.fetchone()
    assert row is not None
    stamp, usage_mark, entry_mark, stored, resolved, grants, closed_before, held = row
    return LedgerRead(
        price_stamp=int(stamp), usage_mark=int(usage_mark), entry_mark=int(entry_mark),
        stored=tuple(Stored(key, bytes.fromhex(sha), int(usage_id), int(amount), entry_id, user)
                     for key, sha, usage_id, amount, entry_id, user in stored),
        resolved=tuple(Resolved(node, lu, int(uid), name, int(wid), code)
                       for node, lu, uid, name, wid, code in resolved),
        grants={int(wallet): tuple(GrantLeft(int(g[0]), g[1], None if g[2] is None else datetime.fromisoformat(g[2]),
                                             int(g[3])) for g in rows)
                for wallet, rows in grants.items()},
        closed_before=closed_before,
        holders=tuple(Resolved("", name, int(uid), name, int(wid), code) for uid, name, wid, code in held),
    )


def rating_state(pg: Pg, codes: Sequence[str], pairs: Sequence[tuple[str, int]],
                 currency: str) -> tuple[dict[str, int], dict[tuple[str, int], Decimal]]:
    """The revenue accounts ``codes`` (created when missing) and the newest cumulative quantity of each
    (epoch, price version) of ``pairs`` that has one."""
    pair_rows = json.dumps([{"epoch": e, "pv": pv} for e, pv in pairs])
    # A revenue account another transaction is creating at the same time: our INSERT waits for it to commit and
    # then does nothing, but the statement's snapshot predates that commit; the next statement's does not.
    for _ in range(2):
        row = pg.execute(_STATE_SQL, {"codes": json.dumps(list(codes)), "currency": currency,
                                      "pairs": pair_rows}).fetchone()
        assert row is not None
        accounts, state = row
        revenue_ids = {code: int(account_id) for code, account_id in accounts}
        if len(revenue_ids) == len(codes):
            break
    return revenue_ids, {(e, int(pv)): Decimal(cq) for e, pv, cq in state if cq is not None}


def write(pg: Pg, doc: PostUsageDocument) -> list[tuple[str, int, int | None]] | None:
    """One round trip: ledger.post_usage takes the writer lock, checks that nothing was written since the read,
    inserts, seals. Returns (key, usage id, entry id or None) per row written; None: the read went stale."""
    row = pg.execute("SELECT ledger.post_usage(%s::jsonb)", (tickdoc.encode(doc),)).fetchone()
    assert row is not None
    if row[0] is None:
        return None
    return [(key, int(usage_id), None if entry_id is None else int(entry_id)) for key, usage_id, entry_id in row[0]]


def record_conflicts(pg: Pg, conflicts: Sequence[Conflict]) -> None:
    pg.cursor().executemany(
        "INSERT INTO ledger.idempotency_conflict (idem_key, existing_sha256, attempted_sha256, actor)"
        " VALUES (%s, %s, %s, %s)",
        [(c.idem_key, c.existing_sha256, c.attempted_sha256, c.actor) for c in conflicts])
