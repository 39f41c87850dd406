"""Prometheus config, recording and alert rules, their promtool unit tests, Alertmanager."""

from __future__ import annotations

import re
import subprocess

import pytest

from _monitoring import PROMETHEUS_DIR, REPO, load_yaml, prometheus_rules, rule_files
from _tools import require_tool

ALERTS = {
    "TokenTrackerSessionCostHigh",
    "TokenTrackerDailyBudgetExceeded",
    "TokenTrackerSpendRateHigh",
    "TokenTrackerUnpricedModel",
    "TokenTrackerLedgerRecovered",
    "TokenTrackerExporterDown",
}
#: alert -> the budget scope its threshold must come from
BUDGET_SCOPE = {
    "TokenTrackerSessionCostHigh": "session",
    "TokenTrackerDailyBudgetExceeded": "day",
    "TokenTrackerSpendRateHigh": "day",
}
UNIT_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> dict[str, dict]:
    return {r["alert"]: r for r in prometheus_rules() if "alert" in r}


def expand_records(expr: str) -> str:
    """``expr`` with recording-rule names replaced by their expressions, recursively."""
    records = {r["record"]: r["expr"] for r in prometheus_rules() if "record" in r}
    for _ in range(5):
        before = expr
        for name, body in records.items():
            expr = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", f"({body})", expr)
        if expr == before:
            return expr
    raise AssertionError("recording rules nest too deep")


def test_promtool_check_config() -> None:
    promtool = require_tool("promtool")
    result = run([promtool, "check", "config", "prometheus/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    # the config loads every rule file
    assert f"{len(rule_files())} rule files found" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    files = [str(f.relative_to(REPO)) for f in rule_files()]
    assert files
    result = run([promtool, "check", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    assert UNIT_TESTS, "no promtool unit tests in prometheus/tests"
    result = run([promtool, "test", "rules", *[str(f.relative_to(REPO)) for f in UNIT_TESTS]])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_the_required_alerts_exist_with_annotations_and_runbook() -> None:
    rules = alert_rules()
    assert set(rules) == ALERTS
    runbook = (PROMETHEUS_DIR.parent / "README.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (\w+)\s*$", runbook, flags=re.M))
    for name, rule in rules.items():
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), name
        assert annotations.get("description", "").strip(), name
        assert annotations.get("runbook_url", "").endswith("#" + name.lower()), name
        assert rule.get("labels", {}).get("severity") in {"info", "warning", "critical"}, name
        assert name in headings, f"{name} has no section in the README's alert runbook"


@pytest.mark.parametrize("alert", sorted(BUDGET_SCOPE))
def test_cost_thresholds_come_from_the_budget_gauges(alert: str) -> None:
    expr = expand_records(alert_rules()[alert]["expr"])
    assert f'token_tracker_budget_usd{{scope="{BUDGET_SCOPE[alert]}"}}' in expr
    # no hard-coded dollar amounts: the only numbers are the burn-rate factor,
    # seconds per day and the "> 0" that disables a zero budget
    numbers = set(re.findall(r"(?<![\w.\[])(\d+(?:\.\d+)?)(?![\w.\]])", expr))
    assert numbers <= {"0", "12", "86400"}, numbers


def test_spend_rate_alert_is_multi_window() -> None:
    expr = expand_records(alert_rules()["TokenTrackerSpendRateHigh"]["expr"])
    windows = set(re.findall(r"rate\(token_tracker_cost_usd_total\[(\w+)\]\)", expr))
    assert len(windows) >= 2, windows
    assert " and" in expr or "\nand" in expr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        doc = load_yaml(path)
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert ALERTS - firing == set(), "alerts never shown firing"
    assert ALERTS - quiet == set(), "alerts never shown not firing"


def test_unit_tests_load_the_shipped_rule_files() -> None:
    for path in UNIT_TESTS:
        doc = load_yaml(path)
        loaded = {(path.parent / f).resolve() for f in doc["rule_files"]}
        assert loaded == {f.resolve() for f in rule_files()}, path


def test_prometheus_scrapes_the_exporter_and_alerts_to_alertmanager() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["token-tracker"]["static_configs"] for t in sc["targets"]]
    assert targets == ["token-tracker:9464"]
    assert jobs["token-tracker"].get("metrics_path", "/metrics") == "/metrics"
    # ExporterDown matches on the job name
    assert 'job="token-tracker"' in alert_rules()["TokenTrackerExporterDown"]["expr"]
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]
    assert config["rule_files"] == ["rules/*.yml"]


def test_alertmanager_config_is_valid() -> None:
    amtool = require_tool("amtool")
    result = run([amtool, "check-config", "alertmanager/alertmanager.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
