"""End to end: every PromQL expression the repo ships, evaluated by a real Prometheus.

The stack (tests/_stack.py: the exporter over a generated ledger, scraped by Prometheus
with the repo's config and rule files) is shared with test_stack_panels.py. Every
expression of the dashboards, the Prometheus rules and the Grafana alert rules is
evaluated through the HTTP API with Grafana's variables substituted; the alerts must
pick what the ledger holds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from _monitoring import (
    Expr,
    dashboard_exprs,
    dashboards,
    grafana_alert_exprs,
    prometheus_rule_exprs,
    prometheus_rules,
    rule_files,
    substitute,
)
from _stack import EXPORTER_JOB, UNPRICED_MODEL, Stack

pytestmark = pytest.mark.slow


# -- every expression parses and evaluates ------------------------------------------------------


def _ids(exprs: list[Expr]) -> list[str]:
    return [f"{e.source}:{e.where}" for e in exprs]


@pytest.mark.parametrize("e", dashboard_exprs(), ids=_ids(dashboard_exprs()))
def test_dashboard_expression_evaluates_with_data(stack: Stack, e: Expr) -> None:
    result = stack.query(substitute(e.expr))
    assert result, f"no data: {e.where}: {e.expr}"
    for sample in result:
        assert not math.isnan(float(sample["value"][1])), (e.where, sample)


@pytest.mark.parametrize("e", prometheus_rule_exprs(), ids=_ids(prometheus_rule_exprs()))
def test_prometheus_rule_expression_evaluates(stack: Stack, e: Expr) -> None:
    stack.query(e.expr)


@pytest.mark.parametrize("e", grafana_alert_exprs(), ids=_ids(grafana_alert_exprs()))
def test_grafana_alert_expression_evaluates_with_data(stack: Stack, e: Expr) -> None:
    assert stack.query(substitute(e.expr)), f"no data: {e.where}: {e.expr}"


def test_prometheus_loaded_and_evaluates_every_rule(stack: Stack) -> None:
    groups = stack.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    shipped = {r.get("alert") or r.get("record") for r in prometheus_rules()}
    assert set(loaded) == shipped
    assert {Path(g["file"]).name for g in groups} == {f.name for f in rule_files()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))


def test_exporter_target_is_up(stack: Stack) -> None:
    assert stack.by(f'up{{job="{EXPORTER_JOB}"}}', "job") == {EXPORTER_JOB: 1.0}


def test_template_variables_list_the_ledger_models_and_sessions(stack: Stack) -> None:
    """label_values(metric{...}, label) through the label-values API, as Grafana does."""
    expected = {
        "model": set(stack.after["models"]),
        "session": set(stack.after["sessions"]),
    }
    for dash in dashboards().values():
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
            assert m, query
            selector, label = substitute(m.group(1)), m.group(2)
            values = stack.api(f"label/{label}/values", **{"match[]": selector})
            assert set(values) == expected[var["name"]], (dash["uid"], var["name"])


# -- the alert expressions on real data ---------------------------------------------------------


def _alert_expr(name: str) -> str:
    return next(r["expr"] for r in prometheus_rules() if r.get("alert") == name)


def test_session_cost_alert_picks_the_sessions_over_budget(stack: Stack) -> None:
    over = {sid for sid, s in stack.after["sessions"].items() if s.total_cost_usd > 1.0}
    assert over == {"big-refactor"}
    assert set(stack.by(_alert_expr("TokenTrackerSessionCostHigh"), "session_id")) == over
    grafana = next(e for e in grafana_alert_exprs() if e.where.startswith("tt-session-cost"))
    ratios = stack.by(grafana.expr, "session_id")
    assert ratios == pytest.approx(
        {sid: s.total_cost_usd / 1.0 for sid, s in stack.after["sessions"].items()}, abs=1e-9
    )


def test_unpriced_model_alert_names_the_model(stack: Stack) -> None:
    assert set(stack.by(_alert_expr("TokenTrackerUnpricedModel"), "model")) == {UNPRICED_MODEL}


@pytest.mark.parametrize(
    "alert",
    ["TokenTrackerExporterDown", "TokenTrackerLedgerRecovered", "TokenTrackerDailyBudgetExceeded"],
)
def test_quiet_alerts_are_quiet(stack: Stack, alert: str) -> None:
    assert stack.query(_alert_expr(alert)) == []
