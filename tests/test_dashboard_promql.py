"""The PromQL of the Grafana dashboards and their template variables.

Checks the dashboards' variables and range selectors, which metrics the panels use,
and parses every PromQL expression the repo ships (dashboards, Prometheus rules,
Grafana alert rules) with promtool, offline; tests/test_stack_e2e.py evaluates them
against a running Prometheus. The dashboards' structure: test_dashboards.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from _monitoring import (
    DASHBOARD_FILES,
    DS,
    GRAFANA_VALUES,
    all_dashboard_text,
    all_exprs,
    dashboard_exprs,
    exprs_of,
    iter_panels,
    load_dashboard,
    substitute,
    used_variables,
)
from _tools import require_tool

BUILTIN_VARS = {
    "__range",
    "__range_s",
    "__range_ms",
    "__rate_interval",
    "__interval",
    "__interval_ms",
}


@pytest.fixture(params=DASHBOARD_FILES)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_dashboard(request.param)


# -- template variables and the panels' queries ---------------------------------------------


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "session"} <= set(variables)
    ds = variables["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    for name, label in (("model", "model"), ("session", "session_id")):
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"] == DS
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert re.fullmatch(rf"label_values\(token_tracker_\w+(\{{.*\}})?, {label}\)", query)
        assert var["includeAll"] and var["multi"]
        assert var["allValue"] == ".*"
        assert var["refresh"] in (1, 2)


def test_queries_are_range_aware_with_known_variables(dashboard: dict[str, Any]) -> None:
    text = all_dashboard_text(dashboard)
    assert "$__range" in text and "$__rate_interval" in text
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in iter_panels(dashboard):
        for expr in exprs_of(panel):
            where = f"{panel['title']!r}: {expr}"
            # no hard-coded windows: every range selector is a Grafana interval
            for window in re.findall(r"\[([^\]]*)\]", expr):
                assert window in ("$__range", "$__rate_interval", "$__interval"), where
            assert "offset" not in expr, where
            assert used_variables(expr) <= variables | BUILTIN_VARS, where
            # multi-value variables with allValue ".*" only work with regex matchers
            for var in ("model", "session"):
                for m in re.finditer(rf"(\S\S)\"\${var}\"", expr):
                    assert m.group(1).endswith("=~"), where


def test_per_session_panels_use_session_metrics_and_totals_use_per_model_metrics() -> None:
    for e in dashboard_exprs():
        if "session_id" in e.expr and "by (session_id)" in e.expr:
            assert "token_tracker_session_" in e.expr, e.where
        if re.search(r"^sum\((increase\()?token_tracker_(input|output|cached|cost)", e.expr):
            assert "token_tracker_session_" not in e.expr, e.where


# -- every PromQL expression parses --------------------------------------------------------


def _check_rules(
    promtool: str, path: Path, group: str, rules: list[dict[str, str]], *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on one rule group ``group`` of ``rules``, written to ``path``."""
    path.write_text(yaml.safe_dump({"groups": [{"name": group, "rules": rules}]}))
    return subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_all_promql_parses_with_promtool(tmp_path: Path) -> None:
    """Offline syntax check: each expression, variables substituted, as a recording rule."""
    promtool = require_tool("promtool")
    exprs = all_exprs()
    assert len(exprs) > 40
    rules = [{"record": f"check:expr_{i}", "expr": substitute(e.expr)} for i, e in enumerate(exprs)]
    result = _check_rules(promtool, tmp_path / "all-exprs.yml", "all", rules, timeout=60)
    if result.returncode != 0:
        # find the culprit for a readable failure
        bad = []
        for i, e in enumerate(exprs):
            r = _check_rules(promtool, tmp_path / f"one-{i}.yml", "g", [rules[i]], timeout=30)
            if r.returncode:
                bad.append(f"{e.source} {e.where}: {e.expr}\n{r.stdout}{r.stderr}")
        pytest.fail("\n".join(bad) or result.stdout + result.stderr)


def test_substitution_leaves_no_variables() -> None:
    for e in all_exprs():
        assert "$" not in substitute(e.expr), e.where
    assert set(GRAFANA_VALUES) >= BUILTIN_VARS
