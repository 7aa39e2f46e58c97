"""deploy/: the alert rules pass their promtool unit tests, the Prometheus config checks, and the
Grafana dashboard is well formed and asks only for metrics ticketq exports. promtool comes from
Debian's prometheus package (`make monitoring-deps`); without it these tests fail, never skip."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ticketq.json"
SAMPLE_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make monitoring-deps` (or apt-get install prometheus)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_every_alert_passes_its_promtool_unit_test() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert alerts == {"TicketqConfirmationLagHigh", "TicketqJobWaiting", "TicketqEmailFailureRatioHigh",
                      "TicketqExpirySweepMissing", "TicketqNoBeat"}
    assert alerts <= tested, f"alerts never shown firing: {alerts - tested}"


def test_the_prometheus_config_checks_with_its_rules() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rules found" in result.stdout


def exported_names() -> set[str]:
    """Every sample name ticketq exports: core/metrics.py's metrics and the API's census."""
    from prometheus_client import Counter, Gauge, Histogram

    from api.gauges import families
    from core import metrics

    described = list(families())
    for obj in vars(metrics).values():
        if isinstance(obj, Counter | Gauge | Histogram):
            described.extend(obj.describe())
    return {family.name + suffix for family in described for suffix in SAMPLE_SUFFIXES}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "ticketq-overview" and dashboard["title"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in panels(dashboard):
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}, panel
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"], panel["title"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ticketq.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_dashboard_asks_for_exported_metrics_in_valid_promql(tmp_path: Path) -> None:
    """Each query parses (promtool checks it as a recording rule) and names only metrics we export."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"].replace("$__rate_interval", "5m") for p in panels(dashboard) for t in p["targets"]]
    known = exported_names()
    for expr in exprs:
        unknown = set(re.findall(r"\bticketq_[a-z_]+", expr)) - known
        assert not unknown, f"{expr}: not exported: {unknown}"
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["alerts.yml", "prometheus.yml"])
def test_the_alert_rules_name_only_exported_metrics(name: str) -> None:
    text = (PROMETHEUS / name).read_text()
    used = set(re.findall(r"\bticketq_[a-z_]+", text))
    assert used - exported_names() == set()
