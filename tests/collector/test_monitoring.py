"""The shipped alert rules and dashboard, checked by their own tools, and the metrics they rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from api.config import ApiConfig
from api.metrics import ApiMetrics
from collector.config import METRICS_WALLETS_MAX, ControllerConfig
from collector.metrics import Metrics, WalletBalances
from collector.types import Node, Outcome, TickSummary
from ledger.errors import ConfigError
from ledger.reports import WalletFigures
from tests.api.live import api_process, free_port
from tests.collector.conftest import Database
from tests.collector.harness import SimNode
from tests.collector.processes import controller_env, start_controller, write_inventory
from tests.collector.samples import GPU0, proc, sample

MONITORING = Path(__file__).resolve().parents[2] / "collector" / "monitoring"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing")


def _promtool(*argv: str, cwd: Path = MONITORING) -> None:
    result = subprocess.run(["promtool", *argv], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    _promtool("check", "rules", "alerts.yml")
    _promtool("test", "rules", "alerts_test.yml")


def _dashboard() -> dict[str, object]:
    return json.loads((MONITORING / "dashboard.json").read_text())


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", ())]  # type: ignore[attr-defined]


# The unit ids the dashboard may use: Grafana's built-in ones (packages/grafana-data/src/valueFormats/categories.ts),
# the few that fit these metrics. Grafana shows an unknown id (e.g. "currency") as a bare number with that suffix.
GRAFANA_UNITS = {"s", "short", "percent", "percentunit", "celsius", "watt", "bytes", "reqps", "bool_yes_no"}


def test_dashboard_matches_the_grafana_schema() -> None:
    schema = json.loads(Path(__file__).with_name("grafana_dashboard.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(_dashboard(), schema, cls=jsonschema.Draft202012Validator)
    ids = [p["id"] for p in _dashboard()["panels"]]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_use_grafana_units_legends_and_the_node_and_model_variables() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}  # type: ignore[index]
    assert {"node", "model"} <= variables.keys() and all(variables[v]["multi"] for v in ("node", "model"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]  # type: ignore[attr-defined]
    assert {p["fieldConfig"]["defaults"]["unit"] for p in panels} <= GRAFANA_UNITS
    for panel in panels:
        for target in panel["targets"]:
            assert target["legendFormat"], panel["title"]
            expr = target["expr"]
            if "gpuledger_gpu_" in expr:
                assert 'node=~"$node"' in expr, panel["title"]
            if re.search(r"gpuledger_gpu_(?!user)", expr):
                assert 'model=~"$model"' in expr, panel["title"]
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]  # type: ignore[attr-defined]
    assert rows == ["API"]
    assert any("gpuledger_api_request_seconds_bucket" in e for e in _dashboard_exprs())


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"gpuledger:dashboard_query:{n}", "expr": expr} for n, expr in enumerate(_dashboard_exprs())
    ]}]}
    (tmp_path / "dashboard_rules.yml").write_text(json.dumps(rules))  # JSON is YAML
    _promtool("check", "rules", "dashboard_rules.yml", cwd=tmp_path)


def _exposed() -> str:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    registry.register(WalletBalances(lambda wallets: {w: WalletFigures(1, 2) for w in wallets}, ("project:vision",)))
    summary = TickSummary(1, datetime.now(UTC), 1.0, {"ok": 1}, 1, 10, 1, 0, False, True, True, False)
    gpu_sample = sample(60, processes=(proc(500, 1001, 1, 1, user='eve"\n{x}'),), gpu_processes=((GPU0, 500, 1 << 30),))
    metrics.observe_tick(summary, [(Node("gpu01", "10.0.0.1"), Outcome.OK, gpu_sample)])
    metrics.observe_skew("gpu01", 1500)
    metrics.observe_gaps([("reboot", 3.0)])
    metrics.action("quota-set", "applied")
    return generate_latest(registry).decode()


def _api_exposed() -> str:
    metrics = ApiMetrics()
    metrics.observe("balance", 200, 0.01)
    return generate_latest(metrics.registry).decode()


def test_every_metric_the_rules_and_dashboard_use_is_exported() -> None:
    exposition = _exposed() + _api_exposed()
    exposed = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line[0] == "#"}
    used = set(re.findall(r"gpuledger_[a-z_]+", (MONITORING / "alerts.yml").read_text() + " ".join(_dashboard_exprs())))
    assert used - exposed == set()


def test_gpu_metrics_carry_node_and_user_and_escape_remote_strings() -> None:
    text = _exposed()
    assert 'gpuledger_gpu_temperature_celsius{gpu="GPU-00000000-0000-0000-0000-000000000000",index="0",' in text
    assert 'user="eve\\"\\n{x}"' in text  # the exposition format escapes what the node sent
    assert 'gpuledger_node_up{node="gpu01"} 1.0' in text


def test_a_user_who_let_go_of_a_gpu_leaves_its_memory_metric_at_the_next_tick() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    summary = TickSummary(1, datetime.now(UTC), 1.0, {"ok": 1}, 1, 10, 1, 0, False, True, True, False)
    node = Node("gpu01", "10.0.0.1")
    holding = sample(60, processes=(proc(500, 1001, 1, 1, user="eve"),), gpu_processes=((GPU0, 500, 1 << 30),))
    metrics.observe_tick(summary, [(node, Outcome.OK, holding)])
    assert 'gpuledger_gpu_user_memory_bytes{gpu="GPU-00000000-0000-0000-0000-000000000000",node="gpu01",user="eve"}' \
        in generate_latest(registry).decode()
    metrics.observe_tick(summary, [(node, Outcome.OK, sample(120, processes=(proc(500, 1001, 1, 1, user="eve"),)))])
    text = generate_latest(registry).decode()
    assert 'user="eve"' not in text
    assert 'gpuledger_node_up{node="gpu01"} 1.0' in text
    metrics.observe_tick(summary, [(node, Outcome.UNREACHABLE, None)])
    assert 'gpuledger_node_up{node="gpu01"} 0.0' in generate_latest(registry).decode()


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3"])
def test_the_metrics_addresses_take_an_ip_literal(address: str) -> None:
    base = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://x@/y", "GPULEDGER_INVENTORY": "/nonexistent"}
    assert ControllerConfig.from_env(base).metrics_address == "127.0.0.1"
    assert ControllerConfig.from_env({**base, "GPULEDGER_METRICS_ADDRESS": f" {address} "}).metrics_address == address
    assert ApiConfig.from_env({}).metrics_address == "127.0.0.1" and ApiConfig.from_env({}).metrics_port is None
    assert ApiConfig.from_env({"GPULEDGER_API_METRICS_ADDRESS": address}).metrics_address == address


@pytest.mark.parametrize("address", ["localhost", "ctl1.lab.example", "127.0.0.1:9470", "*", ""])
def test_the_metrics_addresses_refuse_names_and_ports(address: str) -> None:
    base = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://x@/y", "GPULEDGER_INVENTORY": "/nonexistent"}
    with pytest.raises(ConfigError) as controller:
        ControllerConfig.from_env({**base, "GPULEDGER_METRICS_ADDRESS": address})
    assert controller.value.key == "GPULEDGER_METRICS_ADDRESS"
    with pytest.raises(ConfigError) as api:
        ApiConfig.from_env({"GPULEDGER_API_METRICS_ADDRESS": address})
    assert api.value.key == "GPULEDGER_API_METRICS_ADDRESS"


def _prometheus(port: int, query: str) -> list[dict[str, object]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


def _eventually(predicate: Callable[[], bool], what: Callable[[], str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def _rule_expr(name: str) -> str:
    rules = [r for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    return next(str(r["expr"]) for r in rules if r.get("alert") == name)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian: prometheus) missing")
def test_prometheus_scrapes_the_controller_and_the_api_and_sees_the_controller_go_down(
        api_database: Database, tmp_path: Path) -> None:
    """The shipped rules under a real Prometheus, scraping a running controller and API on the addresses the
    runbook's scrape config names; the down rule's expression is queried, not waited `for:`."""
    node = SimNode("m1", tmp_path / "m1")
    env = {**controller_env(api_database.app_url, write_inventory(tmp_path / "hosts.ini", ["m1"]), node),
           "GPULEDGER_METRICS_ADDRESS": "127.0.0.1", "GPULEDGER_METRICS_PORT": str(controller_port := free_port())}
    api_port, web_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "gpuledger-controller", "static_configs": [{"targets": [f"127.0.0.1:{controller_port}"]}]},
            {"job_name": "gpuledger-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
        ],
    }))
    controller = start_controller(env, tmp_path / "controller.log")
    with open(tmp_path / "prometheus.log", "wb") as log:
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{web_port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        with api_process(api_database.app_url, tmp_path / "api.log", metrics_address="127.0.0.1",
                         metrics_port=str(api_port)):
            def up(job: str) -> bool:
                try:
                    return [r["value"][1] for r in _prometheus(web_port, f'up{{job="{job}"}}')] == ["1"]  # type: ignore[index]
                except httpx.TransportError:
                    return False
            def logs() -> str:
                return "".join((tmp_path / f"{name}.log").read_text()[-2000:] for name in ("prometheus", "controller",
                                                                                            "api"))
            _eventually(lambda: up("gpuledger-controller") and up("gpuledger-api"), logs)
            assert _prometheus(web_port, 'gpuledger_tick_budget_seconds{job="gpuledger-controller"}')
            assert _prometheus(web_port, 'gpuledger_api_requests_total{job="gpuledger-api",operation="healthz"}')
            for alert in ("GpuledgerControllerDown", "GpuledgerControllerAbsent", "GpuledgerApiDown",
                          "GpuledgerApiAbsent"):
                assert _prometheus(web_port, _rule_expr(alert)) == [], alert
            controller.terminate()
            assert controller.wait(30) == 0
            down = _rule_expr("GpuledgerControllerDown")
            _eventually(lambda: bool(_prometheus(web_port, down)), lambda: "the down rule never held\n" + logs())
            [series] = _prometheus(web_port, down)
            assert series["metric"] == {"__name__": "up", "job": "gpuledger-controller",
                                        "instance": f"127.0.0.1:{controller_port}"}
            assert _prometheus(web_port, _rule_expr("GpuledgerApiDown")) == []
            _eventually(lambda: bool(_prometheus(
                web_port, 'ALERTS{alertname="GpuledgerControllerDown",alertstate="pending"}')),
                lambda: "Prometheus never took the alert to pending\n" + logs())
    finally:
        for process in (controller, prometheus):
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def test_the_wallet_allow_list_is_bounded_and_names_wallets() -> None:
    base = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://x@/y", "GPULEDGER_INVENTORY": "/nonexistent"}
    assert ControllerConfig.from_env(base).metrics_wallets == ()
    listed = ControllerConfig.from_env({**base, "GPULEDGER_METRICS_WALLETS": "project:vision, user:alice,user:alice"})
    assert listed.metrics_wallets == ("project:vision", "user:alice")
    for bad in ("alice", "team:x", "user:", ",".join(f"user:u{n}" for n in range(METRICS_WALLETS_MAX + 1))):
        with pytest.raises(ConfigError) as error:
            ControllerConfig.from_env({**base, "GPULEDGER_METRICS_WALLETS": bad})
        assert error.value.key == "GPULEDGER_METRICS_WALLETS"
