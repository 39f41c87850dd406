"""Helpers for the monitoring artifacts: dashboards, Prometheus rules, Grafana alerts.

Collects every PromQL expression the repo ships, and substitutes Grafana template
variables so an expression can be evaluated by a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"
PROMETHEUS_DIR = REPO / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
DASHBOARD_FILES = ("token-spend-compact.json", "token-spend-detailed.json")
#: the datasource every panel and target names: the dashboards' $datasource variable
DS = {"type": "prometheus", "uid": "${datasource}"}

#: What the e2e test and the offline parse check substitute for Grafana's variables.
#: $model / $session are multi-value with allValue ".*" (used with =~ only).
GRAFANA_VALUES = {
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__range": "1h",
    "__rate_interval": "1m",
    "__interval_ms": "15000",
    "__interval": "15s",
    "model": ".*",
    "session": ".*",
    "datasource": "prometheus",
}
_VAR_RE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class Expr:
    source: str  # file name
    where: str  # panel / rule / alert and refId
    expr: str


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))


def dashboards() -> dict[str, dict[str, Any]]:
    return {name: load_dashboard(name) for name in DASHBOARD_FILES}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def exprs_of(panel: dict[str, Any]) -> list[str]:
    """The PromQL of each of ``panel``'s targets ("" for a target without one)."""
    return [t.get("expr", "") for t in panel.get("targets", [])]


def all_dashboard_text(dash: dict[str, Any]) -> str:
    """Every panel expression of ``dash``, one a line."""
    return "\n".join(e for p in iter_panels(dash) for e in exprs_of(p))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def prometheus_rules() -> list[dict[str, Any]]:
    return [rule for f in rule_files() for g in load_yaml(f)["groups"] for rule in g["rules"]]


def grafana_alert_files() -> list[Path]:
    return sorted((PROVISIONING_DIR / "alerting").glob("*.y*ml"))


def grafana_alert_rules() -> list[dict[str, Any]]:
    rules = []
    for f in grafana_alert_files():
        for group in load_yaml(f).get("groups", []) or []:
            rules.extend(group["rules"])
    return rules


def dashboard_exprs() -> list[Expr]:
    out = []
    for name, dash in dashboards().items():
        for panel in iter_panels(dash):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    where = f"{dash['uid']} panel {panel['id']} {panel.get('title')!r} "
                    out.append(Expr(name, where + target["refId"], target["expr"]))
    return out


def prometheus_rule_exprs() -> list[Expr]:
    out = []
    for f in rule_files():
        for group in load_yaml(f)["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                out.append(Expr(f.name, f"{group['name']} {name}", rule["expr"]))
    return out


def grafana_alert_exprs() -> list[Expr]:
    out = []
    for f in grafana_alert_files():
        for group in load_yaml(f).get("groups", []) or []:
            for rule in group["rules"]:
                for query in rule["data"]:
                    expr = query.get("model", {}).get("expr")
                    if query["datasourceUid"] != "__expr__" and expr:
                        out.append(Expr(f.name, f"{rule['uid']} {query['refId']}", expr))
    return out


def all_exprs() -> list[Expr]:
    return dashboard_exprs() + prometheus_rule_exprs() + grafana_alert_exprs()


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana variables ($x, ${x}, ${x:fmt}, [[x]]) replaced.

    An unknown variable raises KeyError, so a typo cannot reach Prometheus as "$x".
    """
    values = GRAFANA_VALUES if values is None else values

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values[name]

    return _VAR_RE.sub(repl, expr)


def used_variables(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) or m.group(3) for m in _VAR_RE.finditer(expr)}


def panel_by_title(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    matches = [p for p in iter_panels(dashboard) if p.get("title") == title]
    assert len(matches) == 1, f"expected one panel {title!r} in {dashboard['uid']}"
    return matches[0]


def target(panel: dict[str, Any], ref: str = "A") -> dict[str, Any]:
    matches = [t for t in panel["targets"] if t["refId"] == ref]
    assert len(matches) == 1, f"expected one target {ref} in panel {panel['title']!r}"
    return matches[0]


def table_columns(panel: dict[str, Any]) -> dict[str, str]:
    """refId -> column name of a table panel that merges instant queries."""
    rename: dict[str, str] = {}
    for transform in panel.get("transformations", []):
        if transform["id"] == "organize":
            rename = transform["options"].get("renameByName", {})
    return {t["refId"]: rename.get(f"Value #{t['refId']}", t["refId"]) for t in panel["targets"]}
