"""The machines pages (issue #14, admin item 4): the node registry with its hardware, one node's GPUs and their
utilization history, and the forms that edit a node and test its connection. Every read is the API's own
(``api.handlers.cluster``, ``api.handlers.connections``) or a published collector view (``node_status``'s
hardware, ``gpu_activity``); every form runs the API operation's handler after checking the form against the
same operation's body schema, so a form and its API row cannot drift."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from jsonschema import Draft202012Validator
from sqlalchemy import text
from starlette.responses import Response

from api.console.pages import operate
from api.console.web import page_of, see_other
from api.errors import unprocessable
from api.handlers import cluster, connections
from api.operation import Call
from api.services import services
from ledger import directory

SORTS = ("name", "region", "status", "last_seen_at", "gpus")
STATUSES = ("connected", "failed", "unknown", "hostkey_mismatch")
HISTORY_HOURS = 24
# The registry's page size: a 1,000-node registry as one table took 75 ms (p50) to render, most of it the rows.
NODE_ROWS = 100
_TIMES = ("last_attempt_at", "last_seen_at", "requested_at", "started_at", "finished_at", "seen_at")


def api_body(operation_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A form's typed fields checked against its API row's body schema (the same limits, the same refusal)."""
    from api.routes import OPERATIONS  # the route table imports the pages: read it when a form is posted

    op = next(o for o in OPERATIONS if o.operation_id == operation_id)
    assert op.body is not None
    errors = sorted(Draft202012Validator(op.body).iter_errors(dict(body)), key=lambda e: list(e.path))
    if errors:
        field = ".".join(str(p) for p in errors[0].path)
        raise unprocessable("validation_error", f"{field}: {errors[0].message}", field=field)
    return dict(body)


def as_call(call: Call, params: Mapping[str, Any], body: Mapping[str, Any] | None = None,
            key: str | None = None) -> Call:
    """The page's call as the API handler's: same session principal (the audit's actor), request id, services,
    and the form's idempotency ``key`` where the API row takes one."""
    page = page_of(call)
    principal = page.principal
    return Call(principal, params, body or {}, call.request_id, key, call.services, call.console)  # type: ignore[arg-type]


def with_times(row: Mapping[str, Any], keys: tuple[str, ...] = _TIMES) -> dict[str, Any]:
    """The API's printed instants back to datetimes, for the page's own time zone and language."""
    return {k: datetime.fromisoformat(v) if k in keys and isinstance(v, str) else v for k, v in row.items()}


@dataclass(frozen=True)
class Hardware:
    """The registry's hardware facts as the probe last reported them (any may be missing)."""

    cpu_model: str | None
    cores: int | None
    logical_cpus: int | None
    memory_bytes: int | None
    disks: tuple[tuple[str, int | None], ...]
    driver: str | None

    @classmethod
    def of(cls, doc: Mapping[str, Any] | None) -> Hardware:
        doc = doc or {}
        cpu, memory, nvidia = (doc.get(k) or {} for k in ("cpu", "memory", "nvidia"))
        disks = tuple((str(d.get("mountpoint") or d.get("device") or ""), d.get("total_bytes"))
                      for d in doc.get("disks") or [] if isinstance(d, Mapping))
        driver = nvidia.get("driver_version") if isinstance(nvidia, Mapping) else None
        return cls(cpu.get("model"), cpu.get("physical_cores"), cpu.get("logical_cpus"), memory.get("total_bytes"),
                   disks, driver)


@dataclass(frozen=True)
class GpuSummary:
    model: str
    count: int
    memory_bytes: int | None


def _gpu_summaries(conn: Any, names: list[str]) -> dict[str, tuple[GpuSummary, ...]]:
    rows = conn.execute(text("SELECT node, coalesce(name, ''), count(*), max(memory_total_bytes)"
                             " FROM collector.gpu_status WHERE node = ANY(:names) GROUP BY 1, 2 ORDER BY 1, 2"),
                        {"names": names})
    out: dict[str, list[GpuSummary]] = {}
    for node, model, count, memory in rows:
        out.setdefault(node, []).append(GpuSummary(model, int(count), memory))
    return {k: tuple(v) for k, v in out.items()}


def _gpu_counts(conn: Any) -> dict[str, int]:
    return {node: int(n) for node, n in conn.execute(text("SELECT node, count(*) FROM collector.gpu_status"
                                                            " GROUP BY 1"))}


def _hardware(conn: Any, names: list[str]) -> dict[str, Hardware]:
    return {name: Hardware.of(doc) for name, doc in conn.execute(
        text("SELECT name, hardware FROM collector.node_status WHERE name = ANY(:names)"), {"names": names})}


def _matches(node: Mapping[str, Any], q: str, status: str | None) -> bool:
    if status is not None and node["status"] != status:
        return False
    needle = q.casefold()
    return not needle or any(needle in str(node[k] or "").casefold() for k in ("name", "region", "remarks", "address"))


def _sort_key(sort: str, gpus: Mapping[str, int]) -> Any:
    if sort == "gpus":
        return lambda n: (-gpus.get(n["name"], 0), n["name"])
    if sort == "last_seen_at":
        # Longest unseen first: the node to look at is at the top.
        return lambda n: (n["last_seen_at"] is not None, n["last_seen_at"] or datetime.min.replace(tzinfo=UTC),
                          n["name"])
    return lambda n: (str(n[sort] or ""), n["name"])


def node_list(call: Call) -> Response:
    """The filtered, sorted registry, NODE_ROWS a page (offset paging: the order is the chosen sort's, the filter
    is kept in the page links); the hardware and GPUs are read for the page's nodes only."""
    page, svc = page_of(call), services(call)
    q, status, sort = call.params.get("q", ""), call.params.get("status") or None, call.params.get("sort", "name")
    listed = [with_times(n) for n in cluster.list_nodes(as_call(call, {}))]
    matching = [n for n in listed if _matches(n, q, status)]
    pages = max(1, -(-len(matching) // NODE_ROWS))
    number = min(call.params.get("page") or 1, pages)
    with svc.read() as conn:
        counts = _gpu_counts(conn) if sort == "gpus" else {}
        shown = sorted(matching, key=_sort_key(sort, counts))[(number - 1) * NODE_ROWS:number * NODE_ROWS]
        names = [n["name"] for n in shown]
        gpus, hardware = _gpu_summaries(conn, names), _hardware(conn, names)
    kept = urlencode({k: v for k, v in (("q", q), ("status", status or ""), ("sort", sort)) if v})
    return page.render("ops/nodes.html", nodes=shown, matching=len(matching), total=len(listed), gpus=gpus,
                       hardware=hardware, q=q, status_filter=status, sort=sort, sorts=SORTS, statuses=STATUSES,
                       page_number=number, pages=pages, first=(number - 1) * NODE_ROWS + 1, kept=kept)


@dataclass(frozen=True)
class GpuHistory:
    """One GPU's last hours: mean utilization per hour (None: no utilization sample that hour), as a
    sparkline's points, and whether it is held but idle now."""

    uuid: str
    hours: tuple[datetime, ...]
    utilization: tuple[Decimal | None, ...]

    def points(self, width: int = 120, height: int = 24) -> str:
        """An SVG polyline's points (drawn by the page, no script): x by hour, y by percent."""
        n = max(len(self.hours) - 1, 1)
        return " ".join(f"{i * width / n:.1f},{height - float(u) * height / 100:.1f}"
                        for i, u in enumerate(self.utilization) if u is not None)


def gpu_history(conn: Any, node: str, end: datetime, hours: int = HISTORY_HOURS,
                only: set[str] | None = None) -> dict[str, GpuHistory]:
    """Each GPU of ``node`` over the ``hours`` whole hours before ``end`` (the hour in progress included)."""
    last = end.replace(minute=0, second=0, microsecond=0)
    slots = tuple(last - timedelta(hours=h) for h in range(hours - 1, -1, -1))
    rows = conn.execute(text(
        "SELECT uuid, hour, utilization_sum, utilization_samples FROM collector.gpu_activity"
        " WHERE node = :n AND hour >= :lo AND hour <= :hi"), {"n": node, "lo": slots[0], "hi": last})
    by: dict[str, dict[datetime, Decimal]] = {}
    for uuid, hour, total, count in rows:
        if only is None or uuid in only:
            by.setdefault(uuid, {})
            if count:
                by[uuid][hour] = Decimal(total) / count
    return {uuid: GpuHistory(uuid, slots, tuple(seen.get(h) for h in slots)) for uuid, seen in by.items()}


def node_detail(call: Call) -> Response:
    page, svc, name = page_of(call), services(call), call.params["name"]
    node = with_times(cluster.get_node(as_call(call, {"name": name})))
    gpus = [with_times(g) for g in node.pop("gpus")]
    with svc.read() as conn:
        hardware = Hardware.of(conn.execute(text("SELECT hardware FROM collector.node_status WHERE name = :n"),
                                            {"n": name}).scalar_one_or_none())
        history = gpu_history(conn, name, datetime.now(UTC))
    return page.render("ops/node.html", node=node, gpus=gpus, hardware=hardware, history=history,
                       hours=HISTORY_HOURS, key=operate.new_key())


def edit_node(call: Call) -> Response:
    """The registry's admin fields, as PATCH /v1/nodes/{name}: an unchecked box is ``listed: false``."""
    form, name = call.body, call.params["name"]
    body = api_body("update_node", {"listed": form.get("listed") == "on", "region": form.get("region", ""),
                                    "remarks": form.get("remarks", "")})
    cluster.update_node(as_call(call, {"name": name}, body, operate.form_key(call)))
    return see_other(f"/nodes/{name}")


def test_connection(call: Call) -> Response:
    """As POST /v1/nodes/{name}/connection-tests; then the test's page, which follows it until it is done."""
    response = connections.request_test(as_call(call, {"name": call.params["name"]}))
    return see_other(f"/connection-tests/{json.loads(response.body)['id']}")


def connection_test(call: Call) -> Response:
    page = page_of(call)
    test = with_times(connections.get_test(as_call(call, {"test_id": call.params["test_id"]})))
    return page.render("ops/connection_test.html", test=test, done=test["status"] == "done")


@dataclass(frozen=True)
class HeldGpu:
    node: str
    index: int | None
    model: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    utilization_percent: int | None
    idle_held: bool
    history: GpuHistory | None


def my_gpus(call: Call) -> Response:
    """The GPUs a billing user holds now: each holder's (node, Linux user) goes through the ledger's directory
    resolution (the mapping the charges use), so a GPU is theirs exactly when its usage would be billed to them."""
    page, svc, name = page_of(call), services(call), call.params["name"]
    svc.ledger.get_user(name)  # UnknownUser -> 404
    with svc.read() as conn:
        gpus = [(node, uuid, index, model, total, state or {}) for node, uuid, index, model, total, state in
                conn.execute(text("SELECT node, uuid, index, name, memory_total_bytes, state FROM collector.gpu_status"
                                  " ORDER BY node, index NULLS LAST, uuid"))]
        holders = {(node, uuid): [str(h["user"]) for h in state.get("holders") or [] if h.get("user")]
                   for node, uuid, _, _, _, state in gpus}
        billed = directory.resolve(conn, [(node, user) for (node, _), users in holders.items() for user in users])
        now = datetime.now(UTC)
        held = [HeldGpu(node, index, model or "", state.get("memory_used_bytes"), total,
                        state.get("utilization_percent"), state.get("activity") == "idle_held",
                        gpu_history(conn, node, now, only={uuid}).get(uuid))
                for node, uuid, index, model, total, state in gpus
                if any(billed.get((node, user)) == name for user in holders[(node, uuid)])]
    return page.render("ops/my_gpus.html", name=name, gpus=held, hours=HISTORY_HOURS)
