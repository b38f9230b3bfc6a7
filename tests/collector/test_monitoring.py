"""The shipped alert rules and dashboard, checked by their own tools, and the metrics they rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from api.metrics import ApiMetrics
from collector.metrics import Metrics
from collector.types import Node, Outcome, TickSummary
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
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]  # type: ignore[attr-defined]


def test_dashboard_matches_the_grafana_schema() -> None:
    schema = json.loads(Path(__file__).with_name("grafana_dashboard.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(_dashboard(), schema, cls=jsonschema.Draft202012Validator)
    ids = [p["id"] for p in _dashboard()["panels"]]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids))


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
