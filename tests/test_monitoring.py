"""deploy/prometheus: the alert rules pass their promtool unit tests and name only metrics ticketq
exports. promtool comes from Debian's prometheus package (`make monitoring-deps`); without it these
tests fail, never skip."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
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


def exported_names() -> set[str]:
    """Every sample name ticketq exports: core/metrics.py's metrics and the API's census."""
    from api.census import families
    from core import metrics

    described = list(families())
    for obj in vars(metrics).values():
        if callable(getattr(obj, "describe", None)) and callable(getattr(obj, "labels", None)):
            described.extend(obj.describe())  # a Counter, Gauge or Histogram
    return {family.name + suffix for family in described for suffix in SAMPLE_SUFFIXES}


@pytest.mark.parametrize("name", ["alerts.yml"])
def test_the_alert_rules_name_only_exported_metrics(name: str) -> None:
    text = (PROMETHEUS / name).read_text()
    used = set(re.findall(r"\bticketq_[a-z_]+", text))
    assert used - exported_names() == set()
