"""Structure of the Grafana dashboards, the provisioning and the Grafana-managed alerts.

Their PromQL and template variables: test_dashboard_promql.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from _monitoring import (
    DASHBOARD_DIR,
    DASHBOARD_FILES,
    DS,
    PROVISIONING_DIR,
    REPO,
    all_dashboard_text,
    dashboards,
    exprs_of,
    grafana_alert_files,
    grafana_alert_rules,
    iter_panels,
    load_dashboard,
    load_yaml,
    table_columns,
)


@pytest.fixture(params=DASHBOARD_FILES)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_dashboard(request.param)


# -- the dashboard JSON -------------------------------------------------------------------


def test_dashboard_files_are_the_expected_ones() -> None:
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(DASHBOARD_FILES)


def test_valid_json_with_stable_unique_uids() -> None:
    uids = set()
    for name in DASHBOARD_FILES:
        dash = json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))
        assert dash["uid"] == Path(name).stem, "uid is stable: the file name"
        assert len(dash["uid"]) <= 40
        assert dash["title"]
        assert dash["id"] is None, "an id would clash on import"
        assert 36 <= dash["schemaVersion"] <= 41
        assert "token-tracker" in dash["tags"]
        uids.add(dash["uid"])
    assert len(uids) == len(DASHBOARD_FILES)


def test_importable_grafana_com_style(dashboard: dict[str, Any]) -> None:
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    text = json.dumps(dashboard)
    # every ${DS_...} placeholder is declared, so the import dialog asks for it
    assert set(re.findall(r"\$\{(DS_\w+)\}", text)) <= set(inputs)
    # ...and it only seeds the datasource variable: panels go through ${datasource},
    # which also works when the file is provisioned as is
    ds_var = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert ds_var["current"]["value"] == "${DS_PROMETHEUS}"
    assert text.count("${DS_PROMETHEUS}") == 1
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert ("datasource", "prometheus") in required
    for panel in iter_panels(dashboard):
        assert ("panel", panel["type"]) in required, panel["type"]


def test_every_panel_has_datasource_targets_unique_id_and_gridpos(
    dashboard: dict[str, Any],
) -> None:
    panels = list(iter_panels(dashboard))
    assert panels
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == len(ids), "panel ids are unique"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        where = f"{dashboard['uid']} panel {panel.get('id')} {panel.get('title')!r}"
        assert panel.get("title"), where
        assert panel.get("datasource") == DS, where
        targets = panel.get("targets")
        assert targets, where
        refs = [t.get("refId") for t in targets]
        assert all(refs) and len(set(refs)) == len(refs), where
        for t in targets:
            assert t.get("datasource") == DS, where
            assert t.get("expr", "").strip(), where
        grid = panel.get("gridPos")
        assert grid and all(isinstance(grid.get(k), int) for k in "hwxy"), where
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0, where
        assert grid["x"] + grid["w"] <= 24, where
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{where} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]


def _kind(expr: str) -> str | None:
    """'cost' or 'tokens' for a plain sum/rate of such counters; None for anything else."""
    if "/" in expr:
        return None
    metrics = set(re.findall(r"token_tracker_\w+", expr))
    if metrics and all(m.endswith("_usd_total") for m in metrics):
        return "cost"
    if metrics and all(m.endswith("_tokens_total") for m in metrics):
        return "tokens"
    return None


def _unit(panel: dict[str, Any], ref: str) -> str | None:
    overrides = panel["fieldConfig"].get("overrides", [])
    column = table_columns(panel)[ref] if panel["type"] == "table" else None
    for o in overrides:
        m = o["matcher"]
        if (m["id"] == "byFrameRefID" and m["options"] == ref) or (
            m["id"] == "byName" and m["options"] == column
        ):
            for prop in o["properties"]:
                if prop["id"] == "unit":
                    return prop["value"]
    return panel["fieldConfig"]["defaults"].get("unit")


def test_units_usd_for_cost_and_short_for_tokens(dashboard: dict[str, Any]) -> None:
    seen = set()
    for panel in iter_panels(dashboard):
        for t in panel["targets"]:
            kind = _kind(t["expr"])
            if kind:
                seen.add(kind)
                expected = "currencyUSD" if kind == "cost" else "short"
                unit = _unit(panel, t["refId"])
                assert unit == expected, f"{panel['title']!r} {t['refId']}: {unit}"
    assert seen == {"cost", "tokens"}


def test_tables_merge_instant_queries_by_label() -> None:
    for dash in dashboards().values():
        for panel in iter_panels(dash):
            if panel["type"] != "table":
                continue
            assert [t["id"] for t in panel["transformations"]][:1] == ["merge"]
            for t in panel["targets"]:
                assert t["instant"] is True and t["format"] == "table", panel["title"]
            names = list(table_columns(panel).values())
            assert len(set(names)) == len(names), panel["title"]


def _find(dash: dict[str, Any], pred) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dash) if pred(p)]


def test_compact_dashboard_content() -> None:
    dash = load_dashboard("token-spend-compact.json")

    def stat_with(*needles: str, absent: str = "\x00"):
        return lambda p: (
            p["type"] == "stat"
            and any(all(n in e for n in needles) and absent not in e for e in exprs_of(p))
        )

    for metric in (
        "token_tracker_input_tokens_total",
        "token_tracker_cached_tokens_total",
        "token_tracker_cost_usd_total",
    ):
        assert _find(dash, stat_with(metric, "[$__range]")), f"{metric} over the range"
        assert _find(dash, stat_with(metric, absent="[")), f"{metric} all time"
    today = _find(dash, lambda p: p.get("timeFrom") == "now/d" and p["type"] == "stat")
    month = _find(dash, lambda p: p.get("timeFrom") == "now/M" and p["type"] == "stat")
    assert today and "cost_usd" in exprs_of(today[0])[0]
    assert month and "cost_usd" in exprs_of(month[0])[0]
    assert _find(dash, stat_with("rate(token_tracker_cost_usd_total", "* 3600")), "$/h rate"
    assert _find(dash, stat_with("token_tracker_sessions")), "active sessions"
    tables = _find(dash, lambda p: p["type"] == "table")
    assert len(tables) == 1
    assert list(table_columns(tables[0]).values()) == ["Tokens", "Cached", "Cost"]
    assert all("by (session_id)" in e for e in exprs_of(tables[0]))


def test_detailed_dashboard_content() -> None:
    dash = load_dashboard("token-spend-detailed.json")
    text = all_dashboard_text(dash)
    tables = {p["title"]: p for p in _find(dash, lambda p: p["type"] == "table")}
    session_cols = set(table_columns(tables["Sessions"]).values())
    model_cols = set(table_columns(tables["Models"]).values())
    assert {"In", "Out", "Cached", "Cost"} <= session_cols
    assert {"In", "Out", "Cached", "Cost"} <= model_cols
    assert all("by (session_id)" in e for e in exprs_of(tables["Sessions"]))
    assert all("by (model)" in e for e in exprs_of(tables["Models"]))
    series = " ".join(
        e for p in _find(dash, lambda p: p["type"] == "timeseries") for e in exprs_of(p)
    )
    for by in ("model", "session_id"):
        for kind in ("input_tokens", "output_tokens", "cached_tokens"):
            assert re.search(rf"by \({by}\) \(rate\(token_tracker_\w*{kind}_total", series)
        assert re.search(rf"by \({by}\) \((rate\()?token_tracker_\w*cost_usd_total", series)
    assert "sum by (model) (token_tracker_cost_usd_total" in text  # cost by model
    assert re.search(r"token_tracker_cached_tokens_total.*\n?.*/.*token_tracker_input_tokens", text)
    assert "token_tracker_cache_savings_usd_total" in text
    assert "topk(" in text and "token_tracker_session_cost_usd_total" in text
    assert "token_tracker_unpriced_tokens_total" in text
    for metric in (
        "token_tracker_ledger_records_total",
        "token_tracker_ledger_recovered_tail_total",
        "token_tracker_ledger_last_record_timestamp_seconds",
        "token_tracker_ledger_size_bytes",
    ):
        assert metric in text, metric


# -- provisioning ---------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return load_yaml(REPO / "docker-compose.yml")


def _grafana_mounts() -> dict[str, str]:
    """container path -> repo-relative host path of grafana's bind mounts."""
    mounts = {}
    for v in _compose()["services"]["grafana"]["volumes"]:
        source, target = v.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def test_datasource_provisioning() -> None:
    doc = load_yaml(PROVISIONING_DIR / "datasources" / "prometheus.yaml")
    assert doc["apiVersion"] == 1
    prom = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    assert len(prom) == 1
    assert prom[0]["uid"] == "prometheus"
    assert prom[0]["url"] == "http://prometheus:9090"
    assert prom[0]["isDefault"] is True
    assert prom[0]["jsonData"]["timeInterval"], "$__rate_interval needs the scrape interval"


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    doc = load_yaml(PROVISIONING_DIR / "dashboards" / "token-tracker.yaml")
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    mounts = _grafana_mounts()
    assert mounts[provider["options"]["path"]] == "grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "grafana/provisioning"


def test_grafana_alert_rules_structure() -> None:
    datasource_uids = {
        d["uid"]
        for d in load_yaml(PROVISIONING_DIR / "datasources" / "prometheus.yaml")["datasources"]
    }
    for path in grafana_alert_files():
        assert load_yaml(path)["apiVersion"] == 1, path
    rules = grafana_alert_rules()
    uids = [r["uid"] for r in rules]
    assert len(set(uids)) == len(uids) == 3
    for rule in rules:
        refs = {q["refId"]: q for q in rule["data"]}
        assert rule["condition"] in refs, rule["uid"]
        assert rule["title"] and rule["for"], rule["uid"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        queries = [q for q in rule["data"] if q["datasourceUid"] != "__expr__"]
        assert queries, rule["uid"]
        for q in queries:
            assert q["datasourceUid"] in datasource_uids, rule["uid"]
            assert q["relativeTimeRange"]["from"] > q["relativeTimeRange"]["to"] == 0
            assert q["model"]["expr"].strip() and q["model"]["refId"] == q["refId"]
        condition = refs[rule["condition"]]["model"]
        assert condition["type"] in {"threshold", "math"}, rule["uid"]
        for q in rule["data"]:
            if q["datasourceUid"] == "__expr__":
                model = q["model"]
                expression = model["expression"]
                for ref in re.findall(r"\$?([A-Z])\b", expression):
                    assert ref in refs, (rule["uid"], expression)


def test_grafana_alerts_cover_the_cost_thresholds() -> None:
    by_expr = {
        r["uid"]: " ".join(q["model"].get("expr", "") for q in r["data"])
        for r in grafana_alert_rules()
    }
    session = [u for u, e in by_expr.items() if 'scope="session"' in e]
    day = [u for u, e in by_expr.items() if 'scope="day"' in e and "increase(" in e]
    spike = [
        u
        for u, e in by_expr.items()
        if len(set(re.findall(r"rate\(token_tracker_cost_usd_total\[(\w+)\]\)", e))) >= 2
    ]
    assert session and day and spike, by_expr
    assert all("token_tracker_session_cost_usd_total" in by_expr[u] for u in session)


def test_grafana_alerts_go_to_alertmanager() -> None:
    doc = load_yaml(PROVISIONING_DIR / "alerting" / "notification.yaml")
    (point,) = doc["contactPoints"]
    (receiver,) = point["receivers"]
    assert receiver["type"] == "prometheus-alertmanager"
    assert receiver["settings"]["url"] == "http://alertmanager:9093"
    assert doc["policies"][0]["receiver"] == point["name"]
