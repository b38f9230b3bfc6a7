"""JSON Schema pieces shared by the route table (requests are validated with them; OpenAPI shows them)."""

from __future__ import annotations

from typing import Any

from control.settings import MAX_SHARES, QUEUE_HOURS_KEYS, QUEUE_INTEGERS, QUEUE_SHARES
from ledger.records import UNITS

Schema = dict[str, Any]

NAME: Schema = {"type": "string", "pattern": "^[a-z_][a-z0-9_.-]{0,63}$"}
WALLET: Schema = {"type": "string", "pattern": "^((user|project):)?[a-z_][a-z0-9_.-]{0,63}$",
                  "description": "user:NAME, project:NAME or a bare user name"}
# At most 10 integer digits: no sum of amounts the API accepts can come near a bigint.
AMOUNT: Schema = {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,6})?$",
                  "description": "decimal amount in the currency, at most 6 decimals"}
SIGNED_AMOUNT: Schema = {"type": "string", "pattern": r"^-?[0-9]{1,10}(\.[0-9]{1,6})?$"}
PRICE_DECIMAL: Schema = {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,9})?$"}
TEXT: Schema = {"type": "string", "maxLength": 500}
# The price book's resources (ledger.records.UNITS): reservation is a granted GPU held unused (docs/queue.md).
RESOURCE: Schema = {"enum": list(UNITS)}
REASON: Schema = {"type": "string", "minLength": 1, "maxLength": 500}
DATE: Schema = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
DATETIME: Schema = {"type": "string", "format": "date-time", "maxLength": 40}
# What the API prints for a point in time: RFC 3339 in UTC (api.render.when; docs/api.md, "Time").
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}
CURRENCY: Schema = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code of every amount"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
CURSOR: Schema = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
NULLABLE_STR: Schema = {"type": ["string", "null"]}
MONEY_OUT: Schema = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$"}
NULLABLE_MONEY: Schema = {"type": ["string", "null"], "pattern": r"^-?[0-9]+\.[0-9]{6}$"}
IDEMPOTENCY_KEY: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,200}$"}


def obj(properties: Schema, required: tuple[str, ...] = (), closed: bool = True) -> Schema:
    """An object schema; requests are closed (unknown fields rejected), responses may grow."""
    out: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    return out


def out(properties: Schema) -> Schema:
    return obj(properties, tuple(properties), closed=False)


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def page(items: Schema) -> Schema:
    return out({"items": array(items), "next_cursor": {"type": ["integer", "null"]}})


USER = out({"name": {"type": "string"}, "display_name": {"type": "string"}, "wallet": {"type": "string"},
            "project": NULLABLE_STR, "exempt": {"type": "boolean"}, "credit_limit": NULLABLE_MONEY,
            "created_at": TIMESTAMP})
PROJECT = out({"name": {"type": "string"}, "display_name": {"type": "string"}, "wallet": {"type": "string"},
               "created_at": TIMESTAMP})
MAPPING = out({"node": {"type": "string"}, "linux_user": {"type": "string"}, "user": {"type": "string"}})
BALANCE = out({"wallet": {"type": "string", "description": "the wallet shown: for a user, the one charged"},
               "currency": CURRENCY, "available": MONEY_OUT,
               "tier": {"enum": ["normal", "warning", "limited", "blocked"]}, "exempt": {"type": "boolean"},
               "credit_limit": NULLABLE_MONEY,
               "own_available": {**NULLABLE_MONEY, "description": "a user charged to a project: what their own "
                                 "wallet holds (it pays for nothing meanwhile); else null"}})
POSTING = out({"account": {"type": "string"}, "amount": MONEY_OUT})
ENTRY = out({"id": {"type": "integer"}, "kind": {"type": "string"}, "idem_key": {"type": "string"},
             "payload_sha256": {"type": "string"}, "effective_at": TIMESTAMP,
             "recorded_at": TIMESTAMP, "actor": {"type": "string"}, "memo": {"type": "string"},
             "ref_entry_id": {"type": ["integer", "null"]}, "usage_id": {"type": ["integer", "null"]},
             "postings": array(POSTING)})
PRICE = out({"id": {"type": "integer"}, "resource": RESOURCE,
             "model_pattern": {"type": "string"}, "match": {"enum": ["exact", "glob"]},
             "priority": {"type": "integer"}, "amount": {"type": "string"}, "per": {"type": "string"},
             "unit": {"type": "string"}, "valid_from": TIMESTAMP, "actor": {"type": "string"},
             "memo": {"type": "string"}})
# A user's idle-held GPU-hours in the statement's period (control.queue.store.idle_hours, two decimals rounded
# half to even); null for a project's wallet.
IDLE_HELD: Schema = {"type": ["string", "null"], "pattern": r"^[0-9]+\.[0-9]{2}$",
                     "description": "GPU-hours the user's grants were held idle in the period; null for a project"}
STATEMENT = out({"wallet": {"type": "string"}, "currency": CURRENCY, "start": TIMESTAMP, "end": TIMESTAMP,
                 "opening": MONEY_OUT, "closing": MONEY_OUT, "idle_held_gpu_hours": IDLE_HELD,
                 "lines": array(out({"entry_id": {"type": "integer"}, "effective_at": TIMESTAMP,
                                     "kind": {"type": "string"}, "memo": {"type": "string"},
                                     "amount": MONEY_OUT, "running": MONEY_OUT}))})
TRIAL_BALANCE = out({"rows": array(out({"account": {"type": "string"}, "kind": {"type": "string"},
                                        "balance": MONEY_OUT})), "total": MONEY_OUT})
USAGE = out({"id": {"type": "integer"}, "node": {"type": "string"}, "linux_user": {"type": "string"},
             "user": {"type": "string"}, "resource": {"type": "string"}, "model": {"type": "string"},
             "quantity": {"type": "string"}, "unit": {"type": "string"}, "interval_start": TIMESTAMP,
             "interval_end": TIMESTAMP, "method": {"type": "string"}, "amount": MONEY_OUT,
             "price_version_id": {"type": ["integer", "null"]}, "entry_id": {"type": ["integer", "null"]}})
TOKEN = out({"id": {"type": "integer"}, "prefix": {"type": "string"}, "name": {"type": "string"},
             "role": {"enum": ["admin", "operator", "auditor", "user"]}, "user": NULLABLE_STR,
             "created_at": TIMESTAMP, "created_by": {"type": "string"}, "expires_at": NULLABLE_TIMESTAMP,
             "revoked_at": NULLABLE_TIMESTAMP})
ERROR = out({"error": out({"code": {"type": "string"}, "message": {"type": "string"},
                           "details": {"type": "object"}, "request_id": {"type": "string"}})})
CONNECTION_TEST = out({"id": {"type": "integer"}, "node": {"type": "string"},
                      "status": {"enum": ["pending", "running", "done"]},
                      "outcome": {"enum": ["ok", "failed", "hostkey_mismatch", "timeout", "unknown_node", None]},
                      "detail": {"type": ["object", "null"],
                                 "properties": {"latency_ms": {"type": "integer"}, "error": NULLABLE_STR,
                                                "hostname": NULLABLE_STR}},
                      "requested_by": {"type": "string"}, "request_id": {"type": "string"},
                      "requested_at": TIMESTAMP, "started_at": NULLABLE_TIMESTAMP, "finished_at": NULLABLE_TIMESTAMP})
# The GPU queue's settings keys as a PUT takes them (bounds from control.settings, which checks them again and
# names the key: the default hours within the maximum, each project's weight).
QUEUE_SETTINGS_BODY: Schema = {
    **{key: {"type": "integer", "minimum": low, "maximum": high} for key, (_, low, high) in QUEUE_INTEGERS.items()},
    **dict.fromkeys(QUEUE_HOURS_KEYS, {"anyOf": [{"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,2})?$"},
                                                 {"type": "integer", "minimum": 1, "maximum": 168}],
                                       "description": "hours, decimal text with at most 2 decimals (or a whole"
                                                      " number), at most 168"}),
    QUEUE_SHARES: {"type": "object", "maxProperties": MAX_SHARES, "propertyNames": NAME,
                   "additionalProperties": {"type": "string", "pattern": r"^[0-9]{1,7}(\.[0-9]{1,6})?$"},
                   "description": "fair-share weight per project, decimal text above 0 (a project left out: 1)"},
}
# A settings version's document (docs/api.md, "Settings"): a key left out is the controller's environment
# (a queue key: the queue's default).
SETTINGS = {"type": "object", "properties": {
    "tier_warning": MONEY_OUT, "tier_limited": MONEY_OUT, "tier_blocked": MONEY_OUT,
    "kill_grace_seconds": {"type": "integer"}, "dry_run": {"type": "boolean"},
    **dict.fromkeys(QUEUE_INTEGERS, {"type": "integer"}),
    **dict.fromkeys(QUEUE_HOURS_KEYS, {"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$"}),
    QUEUE_SHARES: {"type": "object", "additionalProperties": {"type": "string"}}}}
# Whether the controller applies a version (control.settings.parse); when not, it runs on its own configuration.
SETTINGS_PROBLEM = out({"key": {"type": "string"}, "message": {"type": "string"}})
SETTINGS_STANDING = {"in_force": {"type": "boolean"}, "problem": {"anyOf": [SETTINGS_PROBLEM, {"type": "null"}]}}
OVERRIDE = out({"id": {"type": "integer"}, "user": {"type": "string"}, "action": {"enum": ["exempt", "lift", "apply"]},
                "reason": {"type": "string"}, "until": NULLABLE_TIMESTAMP, "actor": {"type": "string"},
                "at": TIMESTAMP})
POSTED = out({"entry": ENTRY})
# A user's or a project's request body: the same fields.
NEW_ACCOUNT = obj({"name": NAME, "display_name": {"type": "string", "maxLength": 200}}, ("name",))
NODE = out({"name": {"type": "string"}, "address": {"type": "string"}, "port": {"type": "integer"},
            "region": {"type": "string"}, "remarks": {"type": "string"}, "listed": {"type": "boolean"},
            "in_inventory": {"type": "boolean"},
            "status": {"enum": ["connected", "failed", "unknown", "hostkey_mismatch"]},
            "last_outcome": NULLABLE_STR, "last_error": NULLABLE_STR, "last_attempt_at": NULLABLE_TIMESTAMP,
            "last_seen_at": NULLABLE_TIMESTAMP, "machine_id": NULLABLE_STR, "boot_id": NULLABLE_STR})
GPU = out({"uuid": {"type": "string"}, "index": {"type": ["integer", "null"]}, "name": NULLABLE_STR,
           "memory_total_bytes": {"type": ["integer", "null"]}, "state": {"type": "object"}, "seen_at": TIMESTAMP})
DECISION = out({"id": {"type": "integer"}, "tick_id": {"type": ["integer", "null"]}, "at": TIMESTAMP,
                "node": {"type": "string"}, "uid": {"type": ["integer", "null"]}, "linux_user": NULLABLE_STR,
                "billing_user": NULLABLE_STR, "tier": NULLABLE_STR,
                "balance": {"type": ["integer", "null"], "description": "micro-units of the currency"},
                "verb": {"type": "string"}, "reason": {"type": "string"}, "dry_run": {"type": "boolean"},
                "outcome": {"enum": ["planned", "applied", "unchanged", "dry_run", "failed", "refused", "unsupported",
                                     "unreachable"]},
                "exit_status": {"type": ["integer", "null"]}, "detail": {"type": "object"},
                "finished_at": NULLABLE_TIMESTAMP, "override_id": {"type": ["integer", "null"]},
                "override_reason": NULLABLE_STR})

# The OpenAPI document's named schemas: api.openapi puts a $ref wherever one of these appears.
COMPONENTS: dict[str, Schema] = {
    "Error": ERROR, "User": USER, "Project": PROJECT, "Mapping": MAPPING, "Balance": BALANCE, "Posting": POSTING,
    "Entry": ENTRY, "Posted": POSTED, "Price": PRICE, "Statement": STATEMENT, "TrialBalance": TRIAL_BALANCE,
    "Usage": USAGE, "Token": TOKEN, "ConnectionTest": CONNECTION_TEST, "Settings": SETTINGS, "Override": OVERRIDE,
    "Node": NODE, "Gpu": GPU, "Decision": DECISION, "SettingsProblem": SETTINGS_PROBLEM, "NewAccount": NEW_ACCOUNT,
}
# -- the GPU queue (api.handlers.queue)
GPU_HOURS: Schema = {"anyOf": [{"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,2})?$"},
                               {"type": "integer", "minimum": 1, "maximum": 168}],
                     "description": "hours, a decimal string with at most 2 decimals (or a whole number)"}
NEW_GPU_REQUEST: Schema = obj({
    "models": {"type": "array", "maxItems": 16, "items": {"type": "string", "minLength": 1, "maxLength": 200},
               "description": "GPU models that will do (empty or left out: any)"},
    "count": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1},
    "hours": {**GPU_HOURS, "description": "the lease's length once granted (default 4, at most 168)"},
    "node": {"type": "string", "minLength": 1, "maxLength": 253}})
_GPU = out({"node": {"type": "string"}, "index": {"type": "integer"}, "model": {"type": "string"}})
GPU_REQUEST: Schema = out({
    "id": {"type": "integer"}, "user": {"type": "string"}, "project": NULLABLE_STR, "models": array({"type": "string"}),
    "count": {"type": "integer"}, "hours": {"type": "string"}, "node": NULLABLE_STR,
    "state": {"enum": ["queued", "offered", "granted", "ended", "refused"]}, "created_at": TIMESTAMP,
    "position": {"type": ["integer", "null"], "description": "place in its pool's order while queued"},
    "eta": {**NULLABLE_TIMESTAMP, "description": "expected start while queued (null: no declared end to go by)"},
    "eta_basis": {"type": "string", "description": "what the ETA rests on"},
    "offer_expires": NULLABLE_TIMESTAMP, "granted_at": NULLABLE_TIMESTAMP, "ends": NULLABLE_TIMESTAMP,
    "ended_at": NULLABLE_TIMESTAMP, "boost_hours": {"type": "integer"}, "reason": {"type": "string"},
    "gpus": {**array(_GPU), "description": "held while queued, offered, or granted"}})
QUEUE_ACTION: Schema = out({
    "id": {"type": "integer"}, "request_id": {"type": "integer"},
    "action": {"enum": ["boost", "cancel", "extend", "approve"]}, "actor": {"type": "string"},
    "reason": {"type": "string"}, "before": {"type": "object"}, "after": {"type": "object"}, "at": TIMESTAMP,
    "replayed": {"type": "boolean", "description": "true: a retry with a used Idempotency-Key, nothing changed"}})
IDLE_REPORT: Schema = out({"start": TIMESTAMP, "end": TIMESTAMP,
                           "users": array(out({"user": {"type": "string"}, "idle_gpu_hours": {"type": "string"}}))})
# What an admin's action on a request answers: the request after it, and the action's record.
QUEUE_ACTED: Schema = out({"request": GPU_REQUEST, "action": QUEUE_ACTION})
# A body of just a reason (reversing an entry, cancelling or approving a GPU request): one component.
REASON_BODY: Schema = obj({"reason": REASON}, ("reason",))
COMPONENTS.update({"GpuRequest": GPU_REQUEST, "GrantedGpu": _GPU, "QueueAction": QUEUE_ACTION,
                   "IdleReport": IDLE_REPORT, "ReasonBody": REASON_BODY, "QueueActed": QUEUE_ACTED})
