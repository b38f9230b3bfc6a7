"""THE route table: every operation, who may call it, and what it takes and returns. The app, the OpenAPI
document and the authorization matrix test are generated from this one tuple.

Roles: admin (everything), operator (nodes and enforcement, no money), auditor (read everything, exports;
no mutation), user (own balance, usage and statement only, through ``Own`` rules)."""

from __future__ import annotations

from api import schemas as s
from api.console.pages import admin as c_admin
from api.console.pages import audit as c_audit
from api.console.pages import auth as c_auth
from api.console.pages import enforcement as c_enforcement
from api.console.pages import exports as c_exports
from api.console.pages import login_ssh as c_login_ssh
from api.console.pages import money as c_money
from api.console.pages import nodes as c_nodes
from api.console.pages import overview as c_overview
from api.console.pages import people as c_people
from api.console.pages import prices as c_prices
from api.console.pages import public as c_public
from api.console.pages import queue as c_queue
from api.console.pages import queue_admin as c_queue_admin
from api.console.pages import queue_idle as c_queue_idle
from api.console.pages import tokens as c_tokens
from api.console.pages import user as c_user
from api.handlers import access, cluster, connections, exports, money, people, queue, reports, settings, system
from api.operation import Operation, Own, Param
from control.queue.records import State
from control.settings import MAX_KILL_GRACE_S, QUEUE_INTEGERS
from ledger.exports import FORMATS

ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "auditor"})
OPS_READERS = frozenset({"admin", "operator", "auditor"})
OPS = frozenset({"admin", "operator"})
# Who may file and end GPU requests for themselves: any caller with a billing user, but not an auditor (reads).
QUEUERS = frozenset({"admin", "operator", "user"})

# A period is checked as a whole (api.services.period), which a parameter's schema cannot say: the
# descriptions do (422 invalid_range, range_too_long).
_RANGE = ("; 'to' must be after 'from' (422 invalid_range) and at most GPULEDGER_API_MAX_REPORT_DAYS (exports:"
          " _EXPORT_DAYS) later (422 range_too_long)")
_FROM = Param("from", s.DATE, description="first local day (inclusive); give 'to' with it, or neither (422"
              " invalid_range)")
_TO = Param("to", s.DATE, description="last local day (exclusive); give 'from' with it, or neither" + _RANGE)
_PERIOD = (Param("from", s.DATE, True, "first local day (inclusive)"),
           Param("to", s.DATE, True, "last local day (exclusive)" + _RANGE))
_PAGE = (Param("cursor", s.CURSOR, description="next_cursor of the previous page"),
         Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}))
_NAME = (Param("name", s.NAME, True),)
_WALLET = (Param("wallet", s.WALLET, True),)
_ENTRY = (Param("entry_id", s.ID, True),)
_NODE = (Param("name", {"type": "string", "minLength": 1, "maxLength": 253}, True),)
_GPU_REQUEST = (Param("request_id", s.ID, True),)
_MEMO = {"memo": {**s.TEXT}}
ALL = frozenset({"admin", "operator", "auditor", "user"})
_HTML = {"type": "string", "contentMediaType": "text/html"}
_NEXT = {"type": "string", "maxLength": 2000}
_FORMAT = Param("format", {"enum": ["html", "csv"]})

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", "healthz", "Database reachable and age of the controller's last tick",
              system.healthz, s.out({"status": {"type": "string"}, "database": {"type": "string"},
                                     "last_tick_age_seconds": {"type": ["number", "null"]}}), public=True),
    Operation("GET", "/metrics", "metrics", "Prometheus metrics", system.metrics, {"type": "string"},
              public=True, media_types=("text/plain",)),
    Operation("GET", "/v1/me", "me", "The calling token", access.me,
              s.out({"token_id": {"type": "integer"}, "name": {"type": "string"}, "role": {"type": "string"},
                     "user": s.NULLABLE_STR}), roles=frozenset({"admin", "operator", "auditor", "user"})),
    # -- tokens
    Operation("GET", "/v1/tokens", "list_tokens", "List tokens (never their secrets)", access.list_tokens,
              s.array(s.TOKEN), roles=ADMIN),
    Operation("POST", "/v1/tokens", "create_token", "Issue a token; the secret is shown once", access.create_token,
              {**s.TOKEN, "properties": {**s.TOKEN["properties"], "token": {"type": "string"}}}, roles=ADMIN,
              status=201, body=s.obj({"name": {"type": "string", "minLength": 1, "maxLength": 100},
                                      "role": {"enum": ["admin", "operator", "auditor", "user"]},
                                      "user": s.NAME, "expires_at": s.DATETIME}, ("name", "role"))),
    Operation("DELETE", "/v1/tokens/{token_id}", "revoke_token", "Revoke a token", access.revoke_token, s.TOKEN,
              roles=ADMIN, path_params=(Param("token_id", s.ID, True),)),
    # -- users, projects, node account map
    Operation("GET", "/v1/users", "list_users", "List billing users", people.list_users, s.array(s.USER),
              roles=OPS_READERS),
    Operation("POST", "/v1/users", "create_user", "Create a billing user and wallet", people.create_user, s.USER,
              roles=ADMIN, status=201,
              body=s.NEW_ACCOUNT),
    Operation("GET", "/v1/users/{name}", "get_user", "One billing user", people.get_user, s.USER,
              roles=OPS_READERS, own=Own("name"), path_params=_NAME),
    Operation("PATCH", "/v1/users/{name}", "update_user", "Exemption, credit limit, project", people.update_user,
              s.USER, roles=ADMIN, path_params=_NAME,
              body=s.obj({"exempt": {"type": "boolean"}, "credit_limit": {"anyOf": [s.AMOUNT, {"type": "null"}]},
                          "project": {"anyOf": [s.NAME, {"type": "null"}]}})),
    Operation("GET", "/v1/projects", "list_projects", "List projects", people.list_projects, s.array(s.PROJECT),
              roles=OPS_READERS),
    Operation("POST", "/v1/projects", "create_project", "Create a project and its wallet", people.create_project,
              s.PROJECT, roles=ADMIN, status=201,
              body=s.NEW_ACCOUNT),
    Operation("GET", "/v1/mappings", "list_mappings", "Node account -> billing user map", people.list_mappings,
              s.array(s.MAPPING), roles=OPS_READERS),
    Operation("PUT", "/v1/mappings", "put_mapping", "Map a Linux account on a node (or '*') to a billing user",
              people.put_mapping, s.MAPPING, roles=ADMIN,
              body=s.obj({"node": {"type": "string", "minLength": 1, "maxLength": 253},
                          "linux_user": {"type": "string", "minLength": 1, "maxLength": 64}, "user": s.NAME},
                         ("node", "linux_user", "user"))),
    # -- money (Idempotency-Key required)
    Operation("POST", "/v1/wallets/{wallet}/recharge", "recharge", "Add money to a wallet", money.recharge,
              s.POSTED, roles=ADMIN, status=201, money=True, path_params=_WALLET,
              body=s.obj({"amount": s.AMOUNT, **_MEMO,
                          "channel": {**s.NAME, "description": "funding channel (default bank)"}}, ("amount",))),
    Operation("POST", "/v1/wallets/{wallet}/grant", "grant", "Grant money, optionally expiring", money.grant,
              s.POSTED, roles=ADMIN, status=201, money=True, path_params=_WALLET,
              body=s.obj({"amount": s.AMOUNT, "expires_at": {"anyOf": [s.DATETIME, {"type": "null"}]}, **_MEMO},
                         ("amount",))),
    Operation("POST", "/v1/wallets/{wallet}/adjust", "adjust", "Signed correction (or write-off) of a wallet",
              money.adjust, s.POSTED, roles=ADMIN, status=201, money=True, path_params=_WALLET,
              body=s.obj({"amount": s.SIGNED_AMOUNT, "reason": s.REASON, "writeoff": {"type": "boolean"}},
                         ("amount", "reason"))),
    Operation("POST", "/v1/entries/{entry_id}/refund", "refund", "Refund part or all of a usage charge",
              money.refund, s.POSTED, roles=ADMIN, status=201, money=True, path_params=_ENTRY,
              body=s.obj({"amount": s.AMOUNT, "reason": s.REASON}, ("amount", "reason"))),
    Operation("POST", "/v1/entries/{entry_id}/reverse", "reverse", "Reverse an entry (once)", money.reverse,
              s.POSTED, roles=ADMIN, status=201, money=True, path_params=_ENTRY,
              body=s.REASON_BODY),
    Operation("GET", "/v1/wallets/{wallet}/balance", "balance",
              "Balance and tier; for a user, of the wallet they are charged to (their project's, if any)",
              money.balance, s.BALANCE, roles=READERS, own=Own("wallet", wallet=True, charged=True),
              path_params=_WALLET),
    Operation("GET", "/v1/wallets/{wallet}/statement", "statement", "Statement over local days", money.statement,
              s.STATEMENT, roles=READERS, own=Own("wallet", wallet=True), path_params=_WALLET, query=_PERIOD),
    # -- ledger reads
    Operation("GET", "/v1/usage", "usage", "Usage records, filtered, cursor-paged", reports.usage, s.page(s.USAGE),
              roles=READERS, own=Own("user"),
              query=(Param("user", s.NAME), Param("node", {"type": "string", "maxLength": 253}),
                     Param("model", {"type": "string", "maxLength": 200}),
                     Param("resource", s.RESOURCE), _FROM, _TO, *_PAGE)),
    Operation("GET", "/v1/entries", "entries", "Journal entries with postings, cursor-paged", reports.entries,
              s.page(s.ENTRY), roles=READERS,
              query=(Param("kind", {"enum": ["usage", "recharge", "grant", "grant_expiry", "adjustment", "refund",
                                             "reversal"]}), _FROM, _TO, *_PAGE)),
    Operation("GET", "/v1/entries/{entry_id}", "entry", "One journal entry with postings", reports.entry, s.ENTRY,
              roles=READERS, path_params=_ENTRY),
    Operation("GET", "/v1/reports/trial-balance", "trial_balance", "Trial balance (now, or at a local day)",
              reports.trial_balance, s.TRIAL_BALANCE, roles=READERS, query=(Param("at", s.DATE),)),
    Operation("GET", "/v1/reports/usage", "usage_report", "Usage totals by user, node, model or resource",
              reports.usage_report, s.array(s.out({"key": {"type": "string"}, "unit": {"type": "string"},
                                                   "quantity": {"type": "string"}, "amount": s.MONEY_OUT})),
              roles=READERS, query=(*_PERIOD, Param("by", {"enum": ["user", "node", "model", "resource"]}))),
    Operation("GET", "/v1/reports/revenue", "revenue", "Revenue by resource account", reports.revenue,
              s.array(s.out({"account": {"type": "string"}, "amount": s.MONEY_OUT})), roles=READERS, query=_PERIOD),
    Operation("GET", "/v1/exports/{format}", "export",
              "Stream the ledger of a period as CSV, hledger or Beancount, or its FOCUS cost report (CSV or Parquet)",
              exports.export, {"type": "string"}, roles=READERS,
              media_types=("text/csv", "text/plain", "application/vnd.apache.parquet"),
              path_params=(Param("format", {"enum": list(FORMATS)}, True),),
              query=(*_PERIOD, Param("as", {"enum": list(exports.FILE_TYPES), "default": "csv"},
                                     description="the focus report's file: csv, or parquet (typed columns, exact"
                                                 " decimals)"))),
    # -- prices
    Operation("GET", "/v1/prices", "list_prices", "Price versions", reports.list_prices, s.array(s.PRICE),
              roles=OPS_READERS),
    Operation("POST", "/v1/prices", "add_price", "A new price version (effective from valid_from)",
              reports.add_price, s.PRICE, roles=ADMIN, status=201,
              body=s.obj({"resource": s.RESOURCE, "amount": s.PRICE_DECIMAL,
                          "per": s.PRICE_DECIMAL, "model_pattern": {"type": "string", "maxLength": 200},
                          "match": {"enum": ["exact", "glob"]}, "priority": {"type": "integer", "minimum": -1000,
                                                                              "maximum": 1000},
                          "valid_from": s.DATETIME, **_MEMO}, ("resource", "amount", "per"))),
    Operation("POST", "/v1/prices/preview", "preview_price", "What a past period would cost under a proposed price",
              reports.preview_price,
              s.out({"rows": s.array(s.out({"model": {"type": "string"}, "quantity": {"type": "string"},
                                            "charged": s.MONEY_OUT, "would_charge": s.MONEY_OUT,
                                            "difference": s.MONEY_OUT}))}),
              roles=READERS, query=_PERIOD,
              body=s.obj({"resource": s.RESOURCE, "amount": s.PRICE_DECIMAL,
                          "per": s.PRICE_DECIMAL, "model_pattern": {"type": "string", "maxLength": 200},
                          "match": {"enum": ["exact", "glob"]}}, ("resource", "amount", "per"))),
    # -- nodes and enforcement
    Operation("GET", "/v1/nodes", "list_nodes", "The node registry with status", cluster.list_nodes,
              s.array(s.NODE), roles=OPS_READERS),
    Operation("GET", "/v1/nodes/{name}", "get_node", "A node with its GPUs' latest state", cluster.get_node,
              s.out({**s.NODE["properties"], "gpus": s.array(s.GPU)}), roles=OPS_READERS,
              path_params=_NODE),
    Operation("PATCH", "/v1/nodes/{name}", "update_node", "Listed flag, region, remarks", cluster.update_node,
              s.out({"name": {"type": "string"}}), roles=OPS, idempotent=True,
              path_params=_NODE,
              body=s.obj({"listed": {"type": "boolean"}, "region": {"type": "string", "maxLength": 100},
                          "remarks": {"type": "string", "maxLength": 500}})),
    Operation("POST", "/v1/nodes/{name}/connection-tests", "test_connection",
              "Ask the controller to test the node's connection now (it connects and runs sample); poll Location",
              connections.request_test, s.CONNECTION_TEST, roles=OPS, status=202, path_params=_NODE,
              response_headers=(("Location", "the test's URL (GET /v1/connection-tests/{test_id})"),)),
    Operation("GET", "/v1/connection-tests/{test_id}", "connection_test",
              "A connection test: pending, running, or done with its outcome", connections.get_test,
              s.CONNECTION_TEST, roles=OPS_READERS, path_params=(Param("test_id", s.ID, True),)),
    Operation("GET", "/v1/enforcement/decisions", "decisions", "Enforcement decisions and actions, cursor-paged",
              cluster.decisions, s.page(s.DECISION), roles=OPS_READERS,
              query=(Param("node", {"type": "string", "maxLength": 253}), Param("billing_user", s.NAME), *_PAGE)),
    Operation("GET", "/v1/enforcement/overrides", "list_overrides", "Manual overrides, newest first",
              cluster.list_overrides, s.array(s.OVERRIDE), roles=OPS_READERS),
    Operation("POST", "/v1/enforcement/overrides", "create_override", "Exempt, lift or apply, with a reason",
              cluster.create_override, s.OVERRIDE, roles=OPS,
              status=201, body=s.obj({"user": s.NAME, "action": {"enum": ["exempt", "lift", "apply"]},
                                      "reason": s.REASON, "until": s.DATETIME}, ("user", "action", "reason"))),
    # -- settings
    Operation("GET", "/v1/settings", "get_settings", "Settings in force (keys left out: the controller's environment)",
              settings.get_settings, s.out({"version": {"type": ["integer", "null"]}, "settings": s.SETTINGS,
                                            **s.SETTINGS_STANDING}), roles=OPS_READERS),
    Operation("GET", "/v1/settings/history", "settings_history", "Every settings version", settings.history,
              s.array(s.out({"version": {"type": "integer"}, "settings": s.SETTINGS, "reason": {"type": "string"},
                             "actor": {"type": "string"}, "at": s.TIMESTAMP, **s.SETTINGS_STANDING})),
              roles=OPS_READERS),
    Operation("PUT", "/v1/settings", "put_settings", "A new settings version (stored keys the controller refuses are"
              " dropped and listed in 'dropped')", settings.put_settings,
              s.out({"version": {"type": "integer"}, "settings": s.SETTINGS, **s.SETTINGS_STANDING,
                     "dropped": {"type": "object"}}), roles=ADMIN,
              body=s.obj({"tier_warning": s.AMOUNT, "tier_limited": s.AMOUNT, "tier_blocked": s.SIGNED_AMOUNT,
                          "kill_grace_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_KILL_GRACE_S,
                                                 "description": "a JSON integer: 60, not 60.0 or 6e1 (422)"},
                          "dry_run": {"type": "boolean"}, **s.QUEUE_SETTINGS_BODY, "reason": s.REASON},
                         ("reason",))),
    # -- the GPU queue (docs/queue.md, "API, CLI and console"): the caller's own requests, then the admins'
    Operation("GET", "/v1/me/gpu-requests", "my_gpu_requests",
              "The caller's GPU requests (live, and ended in the last 7 days): position, ETA with its basis, GPUs,"
              " offer expiry, lease end", queue.mine,
              s.out({"user": {"type": "string"}, "requests": s.array(s.GPU_REQUEST)}),
              roles=ALL),
    Operation("POST", "/v1/me/gpu-requests", "file_gpu_request",
              "Queue a GPU request for the caller (an Idempotency-Key makes a retry file one request)",
              queue.file_request, s.GPU_REQUEST, roles=QUEUERS, status=201, idempotent=True, body=s.NEW_GPU_REQUEST),
    Operation("POST", "/v1/me/gpu-requests/{request_id}/cancel", "cancel_my_gpu_request",
              "Cancel one of the caller's live requests", queue.cancel_mine, s.GPU_REQUEST, roles=QUEUERS,
              path_params=_GPU_REQUEST),
    Operation("POST", "/v1/me/gpu-requests/{request_id}/claim", "claim_my_gpu_request",
              "Claim an offer now (it becomes a grant, a lease of the request's hours)", queue.claim_mine,
              s.GPU_REQUEST, roles=QUEUERS, path_params=_GPU_REQUEST),
    Operation("POST", "/v1/me/gpu-releases", "release_my_gpus",
              "Release one of the caller's grants or offers (request_id), or all of them", queue.release_mine,
              s.out({"released": s.array({"type": "integer"})}), roles=QUEUERS,
              body=s.obj({"request_id": s.ID})),
    Operation("GET", "/v1/gpu-requests", "list_gpu_requests",
              "Live GPU requests, filtered (with user: also theirs that ended in the last 7 days)",
              queue.list_requests, s.array(s.GPU_REQUEST), roles=OPS_READERS,
              query=(Param("user", s.NAME), Param("state", {"enum": [st.value for st in State]}),
                     Param("model", {"type": "string", "maxLength": 200}),
                     Param("node", {"type": "string", "maxLength": 253}))),
    Operation("GET", "/v1/gpu-requests/{request_id}", "get_gpu_request", "One GPU request with its admin actions",
              queue.get_request, s.out({**s.GPU_REQUEST["properties"], "actions": s.array(s.QUEUE_ACTION)}),
              roles=OPS_READERS, path_params=_GPU_REQUEST),
    *(Operation("POST", f"/v1/gpu-requests/{{request_id}}/{verb}", f"{verb}_gpu_request", summary, handler,
                s.QUEUE_ACTED, roles=OPS, idempotent=True,
                path_params=_GPU_REQUEST, body=s.obj({**fields, "reason": s.REASON}, (*fields, "reason")))
      for verb, summary, handler, fields in (
          ("boost", "Reorder: set a queued request's boost (hours of waiting, at most the policy's cap: 422"
           " boost_out_of_range above it)", queue.boost,
           {"boost_hours": {"type": "integer", "minimum": 0,
                            "maximum": QUEUE_INTEGERS["queue_admin_boost_cap_hours"][2]}}),
          ("cancel", "End any live request, with a reason the user sees", queue.cancel, {}),
          ("extend", "Move a grant's end later (refused while someone waits for its GPUs)", queue.extend,
           {"hours": s.GPU_HOURS}),
          ("approve", "Claim an offer on its user's behalf: a grant at once", queue.approve, {}))),
    Operation("GET", "/v1/reports/idle-gpu-hours", "idle_gpu_hours",
              "Idle-held GPU-hours per user over one week (Monday to Monday, local), by default this one",
              queue.idle_report, s.IDLE_REPORT, roles=OPS_READERS,
              query=(Param("week", s.DATE, description="any local day of the week (default: today)"),)),
    # -- the web console: HTML pages and forms (Operation.page), in this table so one role table decides for both
    *(Operation(method, path, op_id, summary, handler, _HTML, page=True, **rest) for method, path, op_id, summary,
      handler, rest in (
        ("GET", "/login", "page_login", "Log in", c_auth.login_form,
         {"public": True, "query": (Param("next", _NEXT),)}),
        ("POST", "/login", "form_login", "Log in with an API token", c_auth.login, {"public": True}),
        ("POST", "/login/ssh", "form_login_ssh", "Start a login proven over SSH on a node", c_login_ssh.start,
         {"public": True}),
        ("GET", "/login/ssh", "page_login_ssh", "The SSH login's code, command and state", c_login_ssh.status,
         {"public": True}),
        ("POST", "/preferences", "form_preferences", "Language and theme", c_auth.preferences, {"public": True}),
        ("GET", "/licenses", "page_licenses", "Licenses of the shipped front-end files", c_public.licenses,
         {"public": True}),
        ("POST", "/logout", "form_logout", "Log out", c_auth.logout, {"roles": ALL}),
        ("GET", "/", "page_home", "A user's home; the machines overview for everyone else", c_admin.landing,
         {"roles": ALL, "query": (Param("bucket", {"enum": list(c_overview.SPANS), "default": "day"}),)}),
        ("GET", "/users", "page_users", "Billing users with balances and tiers", c_admin.users,
         {"roles": OPS_READERS}),
        ("GET", "/users/{name}", "page_user", "A user's balance, tier, burn rate", c_user.home,
         {"roles": READERS, "own": Own("name"), "path_params": _NAME}),
        ("GET", "/users/{name}/usage", "page_usage", "A user's usage by day and GPU model", c_user.usage,
         {"roles": READERS, "own": Own("name"), "path_params": _NAME,
          "query": (Param("days", {"type": "integer", "enum": [7, 30, 90], "default": 30}), _FORMAT)}),
        ("GET", "/users/{name}/statement", "page_statement", "A user's statement for a period", c_user.statement,
         {"roles": READERS, "own": Own("name"), "path_params": _NAME,
          "query": (_FROM, _TO, _FORMAT, Param("after", s.ID, description="the last entry of the previous page"),
                    Param("before", s.CURSOR, description="the first entry of the next page (0: the end)"))}),
        ("GET", "/users/{name}/projects", "page_projects", "A user's project", c_user.projects,
         {"roles": READERS, "own": Own("name"), "path_params": _NAME}),
        ("GET", "/sessions", "page_sessions", "Console sessions and tokens", c_admin.session_list, {"roles": ADMIN}),
        ("POST", "/sessions/{session_id}/revoke", "form_revoke_session", "Revoke a console session",
         c_admin.revoke_session, {"roles": ADMIN, "path_params": (Param("session_id", s.ID, True),)}),
        # -- console: machines
        ("GET", "/nodes", "page_nodes", "The node registry with hardware, filtered and sorted", c_nodes.node_list,
         {"roles": OPS_READERS, "query": (Param("q", {"type": "string", "maxLength": 253}),
                                          Param("status", {"enum": ["", *c_nodes.STATUSES]}),
                                          Param("sort", {"enum": list(c_nodes.SORTS), "default": "name"}),
                                          Param("page", {"type": "integer", "minimum": 1, "default": 1}))}),
        ("GET", "/nodes/{name}", "page_node", "A node: its GPUs' latest state, users and utilization history",
         c_nodes.node_detail, {"roles": OPS_READERS, "path_params": _NODE}),
        ("POST", "/nodes/{name}/edit", "form_update_node", "Listed flag, region, remarks (as PATCH /v1/nodes)",
         c_nodes.edit_node, {"roles": OPS, "path_params": _NODE}),
        ("POST", "/nodes/{name}/test", "form_test_connection", "Test the node's connection now",
         c_nodes.test_connection, {"roles": OPS, "path_params": _NODE}),
        ("GET", "/enforcement", "page_enforcement", "Enforcement decisions (filtered, paged) and overrides",
         c_enforcement.enforcement, {"roles": OPS_READERS,
                                     "query": (Param("node", {"type": "string", "maxLength": 253}),
                                               Param("billing_user", {"anyOf": [s.NAME, {"const": ""}]}), *_PAGE)}),
        ("POST", "/enforcement/overrides", "form_create_override", "An override with a reason and an optional end",
         c_enforcement.create_override, {"roles": OPS}),
        ("GET", "/settings", "page_settings", "Settings versions with their reasons", c_enforcement.settings_page,
         {"roles": OPS_READERS}),
        ("POST", "/settings", "form_put_settings", "A new settings version (as PUT /v1/settings)",
         c_enforcement.put_settings, {"roles": ADMIN}),
        ("GET", "/users/{name}/gpus", "page_my_gpus", "The GPUs a user holds now, with utilization history",
         c_nodes.my_gpus, {"roles": READERS, "own": Own("name"), "path_params": _NAME}),
        # -- console: the GPU queue (docs/queue.md, "API, CLI and console"), with the roles of its API rows: a user's
        # own page (the forms post to /me/...: the identity is the session's billing user), then the admins'
        ("GET", "/users/{name}/gpu-requests", "page_gpu_requests",
         "A user's GPU requests (live, and ended in the last 7 days) and the forms to file, cancel, claim, release",
         c_queue.requests, {"roles": OPS_READERS, "own": Own("name"), "path_params": _NAME}),
        ("POST", "/me/gpu-requests", "form_file_gpu_request", "File a GPU request (as POST /v1/me/gpu-requests)",
         c_queue.file, {"roles": QUEUERS}),
        ("POST", "/me/gpu-requests/{request_id}/cancel", "form_cancel_my_gpu_request", "Cancel one's own request",
         c_queue.cancel, {"roles": QUEUERS, "path_params": _GPU_REQUEST}),
        ("POST", "/me/gpu-requests/{request_id}/claim", "form_claim_my_gpu_request", "Claim an offer now",
         c_queue.claim, {"roles": QUEUERS, "path_params": _GPU_REQUEST}),
        ("POST", "/me/gpu-releases", "form_release_my_gpus", "Release one grant or offer (request_id), or all",
         c_queue.release, {"roles": QUEUERS}),
        ("GET", "/admin/gpu-queue", "page_gpu_queue", "Live GPU requests, filtered and sorted, with the admin forms",
         c_queue_admin.listing, {"roles": OPS_READERS, "query": (
             Param("user", {"anyOf": [s.NAME, {"const": ""}]}),
             Param("state", {"enum": ["", *(st.value for st in State)]}),
             Param("model", {"type": "string", "maxLength": 200}), Param("node", {"type": "string", "maxLength": 253}),
             Param("sort", {"enum": list(c_queue_admin.SORTS), "default": "position"}),
             Param("page", {"type": "integer", "minimum": 1, "default": 1}))}),
        ("GET", "/admin/gpu-queue/{request_id}", "page_gpu_request", "One GPU request with its admin actions",
         c_queue_admin.detail, {"roles": OPS_READERS, "path_params": _GPU_REQUEST,
                                "query": (Param("acted", s.ID, description="the action just recorded"),)}),
        ("POST", "/admin/gpu-queue/{request_id}/boost", "form_boost_gpu_request",
         "Reorder a queued request, with a reason (as POST /v1/gpu-requests/{id}/boost)", c_queue_admin.boost,
         {"roles": OPS, "path_params": _GPU_REQUEST}),
        ("POST", "/admin/gpu-queue/{request_id}/cancel", "form_cancel_gpu_request",
         "End a live request, with a reason (as POST /v1/gpu-requests/{id}/cancel)", c_queue_admin.cancel,
         {"roles": OPS, "path_params": _GPU_REQUEST}),
        ("POST", "/admin/gpu-queue/{request_id}/extend", "form_extend_gpu_request",
         "Move a grant's end later, with a reason (as POST /v1/gpu-requests/{id}/extend)", c_queue_admin.extend,
         {"roles": OPS, "path_params": _GPU_REQUEST}),
        ("POST", "/admin/gpu-queue/{request_id}/approve", "form_approve_gpu_request",
         "Grant an offer now, with a reason (as POST /v1/gpu-requests/{id}/approve)", c_queue_admin.approve,
         {"roles": OPS, "path_params": _GPU_REQUEST}),
        ("GET", "/admin/idle-gpu-hours", "page_idle_gpu_hours", "Idle-held GPU-hours per user over one week",
         c_queue_idle.report, {"roles": OPS_READERS,
                               "query": (Param("week", s.DATE, description="any local day of the week (default:"
                                                                           " today)"), _FORMAT)}),
        ("GET", "/connection-tests/{test_id}", "page_connection_test", "A connection test, followed until done",
         c_nodes.connection_test, {"roles": OPS_READERS, "path_params": (Param("test_id", s.ID, True),)}),
        # -- console: money and people (each form runs its API row's handler: api.console.pages.operate)
        ("GET", "/admin/users/{name}", "page_admin_user", "A billing user's settings and Linux accounts",
         c_people.user, {"roles": READERS, "path_params": _NAME}),
        ("POST", "/admin/users/{name}", "form_update_user", "Exemption, credit limit, project", c_people.update_user,
         {"roles": ADMIN, "path_params": _NAME}),
        ("POST", "/admin/users", "form_create_user", "Create a billing user", c_people.create_user, {"roles": ADMIN}),
        ("GET", "/admin/projects", "page_projects_list", "Projects with members and balances", c_people.projects,
         {"roles": OPS_READERS}),
        ("POST", "/admin/projects", "form_create_project", "Create a project", c_people.create_project,
         {"roles": ADMIN}),
        ("GET", "/admin/mappings", "page_mappings", "Linux accounts -> billing users", c_people.mappings,
         {"roles": OPS_READERS}),
        ("POST", "/admin/mappings", "form_put_mapping", "Map a Linux account", c_people.put_mapping,
         {"roles": ADMIN}),
        ("GET", "/admin/wallets/{wallet}", "page_wallet", "A wallet: balance, entries, money forms", c_money.wallet,
         {"roles": READERS, "path_params": _WALLET, "query": (Param("posted", s.ID),)}),
        ("POST", "/admin/wallets/{wallet}/recharge", "form_recharge", "Recharge a wallet", c_money.recharge,
         {"roles": ADMIN, "path_params": _WALLET}),
        ("POST", "/admin/wallets/{wallet}/grant", "form_grant", "Grant money", c_money.grant,
         {"roles": ADMIN, "path_params": _WALLET}),
        ("POST", "/admin/wallets/{wallet}/adjust", "form_adjust", "Adjust a wallet", c_money.adjust,
         {"roles": ADMIN, "path_params": _WALLET}),
        ("GET", "/admin/entries/{entry_id}", "page_entry", "A journal entry; refund and reverse", c_money.entry,
         {"roles": READERS, "path_params": _ENTRY}),
        ("POST", "/admin/entries/{entry_id}/refund", "form_refund", "Refund a usage charge", c_money.refund,
         {"roles": ADMIN, "path_params": _ENTRY}),
        ("POST", "/admin/entries/{entry_id}/reverse", "form_reverse", "Reverse an entry", c_money.reverse,
         {"roles": ADMIN, "path_params": _ENTRY}),
        ("GET", "/admin/prices", "page_prices", "The price book", c_prices.book, {"roles": OPS_READERS}),
        ("POST", "/admin/prices", "form_add_price", "A new price version", c_prices.add, {"roles": ADMIN}),
        ("POST", "/admin/prices/preview", "form_preview_price", "What a past period would cost at a price",
         c_prices.preview, {"roles": READERS}),
        ("GET", "/admin/exports", "page_exports", "Export a period", c_exports.form, {"roles": READERS}),
        ("GET", "/admin/exports/file", "page_export_file", "Download an export", c_exports.download,
         {"roles": READERS, "query": (Param("format", {"enum": list(FORMATS)}, True), *_PERIOD,
                                      Param("as", {"enum": list(exports.FILE_TYPES), "default": "csv"}))}),
        ("GET", "/admin/audit", "page_audit", "The admin audit log, filtered and paged", c_audit.log,
         {"roles": READERS, "query": (*(Param(k, {"type": "string", "maxLength": 200}) for k in ("actor", "action",
                                                                                                  "target")),
                                      Param("before", s.ID, description="the last id of the previous page"),
                                      Param("log", {"enum": list(c_audit.LOGS), "default": "ledger"}))}),
        ("POST", "/tokens", "form_issue_token", "Issue an API token (its secret shown once)", c_tokens.issue,
         {"roles": ADMIN}),
        ("POST", "/tokens/{token_id}/revoke", "form_revoke_token", "Revoke an API token", c_tokens.revoke,
         {"roles": ADMIN, "path_params": (Param("token_id", s.ID, True),)}),
    )),
)
