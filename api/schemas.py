"""JSON Schema pieces shared by the route table (requests are validated with them; OpenAPI shows them)."""

from __future__ import annotations

from typing import Any

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
REASON: Schema = {"type": "string", "minLength": 1, "maxLength": 500}
DATE: Schema = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
DATETIME: Schema = {"type": "string", "format": "date-time", "maxLength": 40}
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
            "created_at": {"type": "string"}})
PROJECT = out({"name": {"type": "string"}, "display_name": {"type": "string"}, "wallet": {"type": "string"},
               "created_at": {"type": "string"}})
MAPPING = out({"node": {"type": "string"}, "linux_user": {"type": "string"}, "user": {"type": "string"}})
BALANCE = out({"wallet": {"type": "string", "description": "the wallet shown: for a user, the one charged"},
               "available": MONEY_OUT,
               "tier": {"enum": ["normal", "warning", "limited", "blocked"]}, "exempt": {"type": "boolean"},
               "credit_limit": NULLABLE_MONEY,
               "own_available": {**NULLABLE_MONEY, "description": "a user charged to a project: what their own "
                                 "wallet holds (it pays for nothing meanwhile); else null"}})
POSTING = out({"account": {"type": "string"}, "amount": MONEY_OUT})
ENTRY = out({"id": {"type": "integer"}, "kind": {"type": "string"}, "idem_key": {"type": "string"},
             "payload_sha256": {"type": "string"}, "effective_at": {"type": "string"},
             "recorded_at": {"type": "string"}, "actor": {"type": "string"}, "memo": {"type": "string"},
             "ref_entry_id": {"type": ["integer", "null"]}, "usage_id": {"type": ["integer", "null"]},
             "postings": array(POSTING)})
PRICE = out({"id": {"type": "integer"}, "resource": {"enum": ["gpu", "cpu", "memory"]},
             "model_pattern": {"type": "string"}, "match": {"enum": ["exact", "glob"]},
             "priority": {"type": "integer"}, "amount": {"type": "string"}, "per": {"type": "string"},
             "unit": {"type": "string"}, "valid_from": {"type": "string"}, "actor": {"type": "string"},
             "memo": {"type": "string"}})
STATEMENT = out({"wallet": {"type": "string"}, "start": {"type": "string"}, "end": {"type": "string"},
                 "opening": MONEY_OUT, "closing": MONEY_OUT,
                 "lines": array(out({"entry_id": {"type": "integer"}, "effective_at": {"type": "string"},
                                     "kind": {"type": "string"}, "memo": {"type": "string"},
                                     "amount": MONEY_OUT, "running": MONEY_OUT}))})
TRIAL_BALANCE = out({"rows": array(out({"account": {"type": "string"}, "kind": {"type": "string"},
                                        "balance": MONEY_OUT})), "total": MONEY_OUT})
USAGE = out({"id": {"type": "integer"}, "node": {"type": "string"}, "linux_user": {"type": "string"},
             "user": {"type": "string"}, "resource": {"type": "string"}, "model": {"type": "string"},
             "quantity": {"type": "string"}, "unit": {"type": "string"}, "interval_start": {"type": "string"},
             "interval_end": {"type": "string"}, "method": {"type": "string"}, "amount": MONEY_OUT,
             "price_version_id": {"type": ["integer", "null"]}, "entry_id": {"type": ["integer", "null"]}})
TOKEN = out({"id": {"type": "integer"}, "prefix": {"type": "string"}, "name": {"type": "string"},
             "role": {"enum": ["admin", "operator", "auditor", "user"]}, "user": NULLABLE_STR,
             "created_at": {"type": "string"}, "created_by": {"type": "string"}, "expires_at": NULLABLE_STR,
             "revoked_at": NULLABLE_STR})
ERROR = out({"error": out({"code": {"type": "string"}, "message": {"type": "string"},
                           "details": {"type": "object"}, "request_id": {"type": "string"}})})
CONNECTION_TEST = out({"id": {"type": "integer"}, "node": {"type": "string"},
                      "status": {"enum": ["pending", "running", "done"]},
                      "outcome": {"enum": ["ok", "failed", "hostkey_mismatch", "timeout", "unknown_node", None]},
                      "detail": {"type": ["object", "null"],
                                 "properties": {"latency_ms": {"type": "integer"}, "error": NULLABLE_STR,
                                                "hostname": NULLABLE_STR}},
                      "requested_by": {"type": "string"}, "request_id": {"type": "string"},
                      "requested_at": {"type": "string"}, "started_at": NULLABLE_STR, "finished_at": NULLABLE_STR})
# A settings version's document (docs/api.md, "Settings"): a key left out is the controller's environment.
SETTINGS = {"type": "object", "properties": {"tier_warning": MONEY_OUT, "tier_limited": MONEY_OUT,
                                             "tier_blocked": MONEY_OUT, "kill_grace_seconds": {"type": "integer"},
                                             "dry_run": {"type": "boolean"}}}
# Whether the controller applies a version (control.settings.parse); when not, it runs on its own configuration.
SETTINGS_STANDING = {"in_force": {"type": "boolean"},
                     "problem": {"anyOf": [out({"key": {"type": "string"}, "message": {"type": "string"}}),
                                           {"type": "null"}]}}
OVERRIDE = out({"id": {"type": "integer"}, "user": {"type": "string"}, "action": {"enum": ["exempt", "lift", "apply"]},
                "reason": {"type": "string"}, "until": NULLABLE_STR, "actor": {"type": "string"},
                "at": {"type": "string"}})
