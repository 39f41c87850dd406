"""End to end: the exporter over a generated ledger, scraped by a real Prometheus.

Prometheus runs with the repo's prometheus/prometheus.yml (scrape and evaluation
interval 1s, targets rewritten to loopback, no Alertmanager) and the repo's rule files.
Every PromQL expression of the dashboards, the Prometheus rules and the Grafana alert
rules is evaluated through the HTTP API with Grafana's variables substituted, and the
panels must return the numbers the ledger holds: totals, per session, per model, and,
for the range panels, the spend recorded while Prometheus was watching.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from _monitoring import (
    GRAFANA_VALUES,
    PROMETHEUS_DIR,
    Expr,
    dashboard_exprs,
    dashboards,
    grafana_alert_exprs,
    panel_by_title,
    prometheus_rule_exprs,
    prometheus_rules,
    rule_files,
    substitute,
    table_columns,
    target,
)
from _tools import require_tool
from conftest import subprocess_env

pytestmark = pytest.mark.slow

UNPRICED_MODEL = "acme-llm-1"
# (session, model, input, output, cached, cache_creation); "big-refactor" passes the
# $1.00 session budget, the others stay under it.
BASELINE = [
    ("big-refactor", "claude-opus-4.6", 30_000, 4_000, 10_000, 0),
    ("big-refactor", "claude-opus-4.6", 30_000, 4_000, 10_000, 2_000),
    ("big-refactor", "claude-sonnet-4.5", 8_000, 1_500, 0, 0),
    ("docs-pass", "claude-sonnet-4.5", 5_000, 1_200, 2_500, 0),
    ("docs-pass", "claude-haiku-4.5", 12_000, 900, 6_000, 500),
    ("quick-fix", "claude-haiku-4.5", 2_000, 300, 0, 0),
    ("side-project", UNPRICED_MODEL, 1_500, 400, 0, 0),
]
# recorded after Prometheus has scraped the baseline: what the range panels must show
LIVE = [
    ("quick-fix", "claude-haiku-4.5", 4_000, 700, 1_000, 0),
    ("docs-pass", "claude-sonnet-4.5", 6_000, 800, 3_000, 0),
    ("live-session", "claude-opus-4.6", 3_000, 500, 0, 0),
]
EXPORTER_JOB = "token-tracker"
DEADLINE = 30.0  # seconds, for each wait


# -- processes and HTTP -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = DEADLINE,
    procs: tuple[subprocess.Popen[bytes], ...] = (),
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(
                    f"{proc.args[0]} exited with {proc.returncode} while waiting for {what}"
                )
        try:
            result = check()
        except (OSError, ValueError, KeyError) as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Stack:
    prometheus_url: str
    exporter_url: str
    ledger: Path
    eval_time: float = 0.0
    requests: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)  # tracker numbers at baseline
    after: dict[str, Any] = field(default_factory=dict)  # and with the live requests

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.prometheus_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", (url, status, doc)
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, time=f"{at or self.eval_time:.3f}")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", data
        return data["result"]

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def by(self, expr: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for sample in self.query(expr):
            key = sample["metric"][label]
            assert key not in out, (expr, key)
            out[key] = float(sample["value"][1])
        return out


# -- what the tracker API says the numbers are -------------------------------------------------


def tracker_numbers(ledger: Path) -> dict[str, Any]:
    from token_tracker import TokenTracker

    with TokenTracker(persistence_path=ledger) as tracker:
        sessions = tracker.get_all_sessions()
        usage = tracker.get_global_usage()
        models: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for s in sessions.values():
            for name, m in s.models.items():
                row = models[name]
                row["In"] += m.usage.input_tokens
                row["Out"] += m.usage.output_tokens
                row["Cached"] += m.usage.cached_tokens
                row["Cache creation"] += m.usage.cache_creation_tokens
                row["Requests"] += m.request_count
                row["Cost"] += m.cost_usd
                row["Cache savings"] += m.cost_savings_from_cache
                row["Unpriced tokens"] += m.unpriced_tokens
        return {
            "cost": tracker.get_global_cost(),
            "usage": usage,
            "sessions": sessions,
            "models": {k: dict(v) for k, v in models.items()},
        }


def record(ledger: Path, requests: list[tuple[str, str, int, int, int, int]]) -> None:
    from token_tracker import TokenTracker

    with TokenTracker(persistence_path=ledger) as tracker:
        for sid, model, inp, out, cached, created in requests:
            tracker.track_request(sid, model, inp, out, cached, cache_creation_tokens=created)


# -- the stack -------------------------------------------------------------------------------


def prometheus_config(exporter_port: int, prometheus_port: int) -> dict[str, Any]:
    """The repo's prometheus.yml, pointed at loopback, with 1s intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config.pop("alerting", None)  # no Alertmanager here; alerts are checked via the API
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    targets = {
        EXPORTER_JOB: f"127.0.0.1:{exporter_port}",
        "prometheus": f"127.0.0.1:{prometheus_port}",
    }
    for job in config["scrape_configs"]:
        assert job["job_name"] in targets, f"no loopback target for job {job['job_name']}"
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_tool("prometheus")
    with pytest.MonkeyPatch.context() as mp:
        # the default price table, whatever the developer's shell sets
        mp.delenv("TOKEN_TRACKER_PRICING", raising=False)
        mp.delenv("TOKEN_TRACKER_LEDGER", raising=False)
        yield from _run_stack(prometheus, tmp_path_factory.mktemp("stack"))


def _run_stack(prometheus: str, tmp: Path) -> Iterator[Stack]:
    ledger = tmp / "multi-term" / "token_usage.json"
    ledger.parent.mkdir()
    record(ledger, BASELINE)

    exporter_log = tmp / "exporter.log"
    prometheus_log = tmp / "prometheus.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with exporter_log.open("wb") as log:
            exporter = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "token_tracker",
                    "serve",
                    "--ledger",
                    str(ledger),
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--session-ttl",
                    "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=subprocess_env(),
            )
        procs.append(exporter)

        def exporter_address() -> str | None:
            m = re.search(r"serving (http://127\.0\.0\.1:\d+)", exporter_log.read_text())
            return m.group(1) if m else None

        exporter_url = wait_for(
            "the exporter's address in its log", exporter_address, procs=(exporter,)
        )
        wait_for("/healthz", lambda: http_get(exporter_url + "/healthz")[0] == 200)
        exporter_port = int(exporter_url.rsplit(":", 1)[1])

        prometheus_port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(exporter_port, prometheus_port)))
        with prometheus_log.open("wb") as log:
            prom = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append(prom)
        url = f"http://127.0.0.1:{prometheus_port}"
        wait_for("Prometheus ready", lambda: http_get(url + "/-/ready")[0] == 200, procs=(prom,))
        s = Stack(url, exporter_url, ledger, requests=list(BASELINE))
        s.before = tracker_numbers(ledger)

        def samples(expr: str) -> float:
            result = s.query(expr, at=time.time())
            return float(result[0]["value"][1]) if result else 0.0

        # a few scrapes of the baseline, so the live requests are an increase
        scrapes = f'count_over_time(up{{job="{EXPORTER_JOB}"}}[1m])'
        wait_for("5 scrapes of the baseline", lambda: samples(scrapes) >= 5, procs=tuple(procs))
        record(ledger, LIVE)
        s.requests += LIVE
        s.after = tracker_numbers(ledger)
        wait_for(
            "the live requests in Prometheus",
            lambda: math.isclose(
                samples("sum(token_tracker_cost_usd_total)"), s.after["cost"], abs_tol=1e-9
            ),
            procs=tuple(procs),
        )
        wait_for(
            "5 scrapes with the live requests",
            lambda: (
                samples(
                    "count_over_time((sum(token_tracker_requests_total) == "
                    f"{len(s.requests)})[1m:1s])"
                )
                >= 5
            ),
            procs=tuple(procs),
        )
        live_seen = time.time()
        wait_for(
            "every rule evaluated after that",
            lambda: _rules_evaluated_since(s, live_seen),
            procs=tuple(procs),
        )
        s.eval_time = time.time()
        yield s
    except BaseException:
        for path in (exporter_log, prometheus_log):
            if path.exists():
                sys.stderr.write(f"--- {path.name}\n{path.read_text()[-4000:]}\n")
        raise
    finally:
        for proc in reversed(procs):
            stop(proc)


def _rules_evaluated_since(stack: Stack, since: float) -> bool:
    groups = stack.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    if len(rules) != len(prometheus_rules()):
        return False
    for rule in rules:
        last = rule.get("lastEvaluation", "0001")
        if last.startswith("0001"):
            return False
        # RFC 3339 in UTC with nanoseconds: "2026-12-04T20:10:01.123456789Z"
        stamp = calendar.timegm(time.strptime(last[:19], "%Y-%m-%dT%H:%M:%S"))
        if stamp < math.floor(since):
            return False
    return True


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


# -- the numbers the ledger holds ---------------------------------------------------------------


def q(panel: dict[str, Any], ref: str = "A", **values: str) -> str:
    return substitute(target(panel, ref)["expr"], {**GRAFANA_VALUES, **values})


def test_compact_totals(stack: Stack) -> None:
    dash = dashboards()["token-spend-compact.json"]
    usage = stack.after["usage"]
    assert stack.scalar(q(panel_by_title(dash, "Cost · all time"))) == pytest.approx(
        stack.after["cost"], abs=1e-9
    )
    assert stack.scalar(q(panel_by_title(dash, "Tokens · all time"))) == usage.total_tokens
    assert stack.scalar(q(panel_by_title(dash, "Cached tokens · all time"))) == (
        usage.cached_tokens
    )
    assert stack.scalar(q(panel_by_title(dash, "Active sessions"))) == len(stack.after["sessions"])
    assert stack.scalar(q(panel_by_title(dash, "Spend rate ($/h)"))) > 0


def _between(value: float, delta: float) -> None:
    """increase() over the range: the live delta, plus at most a little extrapolation."""
    assert delta > 0
    assert delta * (1 - 1e-9) <= value <= delta * 1.3, (value, delta)


def test_compact_range_panels_show_the_spend_seen_live(stack: Stack) -> None:
    dash = dashboards()["token-spend-compact.json"]
    before, after = stack.before, stack.after
    _between(stack.scalar(q(panel_by_title(dash, "Cost · range"))), after["cost"] - before["cost"])
    _between(
        stack.scalar(q(panel_by_title(dash, "Tokens · range"))),
        after["usage"].total_tokens - before["usage"].total_tokens,
    )
    _between(
        stack.scalar(q(panel_by_title(dash, "Cached tokens · range"))),
        after["usage"].cached_tokens - before["usage"].cached_tokens,
    )
    # "today" with $__range = the time since midnight; here the 1h substitute
    _between(stack.scalar(q(panel_by_title(dash, "Cost today"))), after["cost"] - before["cost"])
    _between(
        stack.scalar(q(panel_by_title(dash, "Daily budget used"))),
        (after["cost"] - before["cost"]) / 10.0,
    )


def test_compact_session_table(stack: Stack) -> None:
    panel = panel_by_title(dashboards()["token-spend-compact.json"], "Sessions")
    columns = table_columns(panel)
    sessions = stack.after["sessions"]
    expected = {
        "Tokens": {sid: s.total_usage.total_tokens for sid, s in sessions.items()},
        "Cached": {sid: s.total_usage.cached_tokens for sid, s in sessions.items()},
        "Cost": {sid: s.total_cost_usd for sid, s in sessions.items()},
    }
    for ref, column in columns.items():
        got = stack.by(q(panel, ref), "session_id")
        assert got == pytest.approx(expected[column], abs=1e-9), column


def test_detailed_session_table(stack: Stack) -> None:
    panel = panel_by_title(dashboards()["token-spend-detailed.json"], "Sessions")
    sessions = stack.after["sessions"]
    value = {
        "In": lambda s: s.total_usage.input_tokens,
        "Out": lambda s: s.total_usage.output_tokens,
        "Cached": lambda s: s.total_usage.cached_tokens,
        "Cost": lambda s: s.total_cost_usd,
        "Requests": lambda s: s.request_count,
    }
    for ref, column in table_columns(panel).items():
        got = stack.by(q(panel, ref), "session_id")
        want = {sid: value[column](s) for sid, s in sessions.items()}
        assert got == pytest.approx(want, abs=1e-9), column


def test_detailed_model_table(stack: Stack) -> None:
    panel = panel_by_title(dashboards()["token-spend-detailed.json"], "Models")
    models, before = stack.after["models"], stack.before["models"]
    for ref, column in table_columns(panel).items():
        got = stack.by(q(panel, ref), "model")
        if column == "Cost · range":
            for model, row in models.items():
                delta = row["Cost"] - before.get(model, {}).get("Cost", 0.0)
                if delta:
                    _between(got[model], delta)
                else:
                    assert got.get(model, 0.0) == 0.0, model
            continue
        want = {model: row[column] for model, row in models.items()}
        assert got == pytest.approx(want, abs=1e-9), column


def test_detailed_breakdowns(stack: Stack) -> None:
    dash = dashboards()["token-spend-detailed.json"]
    models, sessions, usage = stack.after["models"], stack.after["sessions"], stack.after["usage"]
    assert stack.by(q(panel_by_title(dash, "Cost by model")), "model") == pytest.approx(
        {m: row["Cost"] for m, row in models.items()}, abs=1e-9
    )
    assert stack.by(q(panel_by_title(dash, "Top sessions by cost")), "session_id") == (
        pytest.approx({sid: s.total_cost_usd for sid, s in sessions.items()}, abs=1e-9)
    )
    assert stack.scalar(q(panel_by_title(dash, "Cache hit ratio · all time"))) == pytest.approx(
        usage.cached_tokens / usage.input_tokens
    )
    assert stack.scalar(q(panel_by_title(dash, "Cache savings · all time"))) == pytest.approx(
        sum(row["Cache savings"] for row in models.values()), abs=1e-9
    )
    unpriced = {m: row["Unpriced tokens"] for m, row in models.items() if row["Unpriced tokens"]}
    assert set(unpriced) == {UNPRICED_MODEL}
    assert stack.scalar(q(panel_by_title(dash, "Unpriced tokens · all time"))) == sum(
        unpriced.values()
    )
    assert stack.by(q(panel_by_title(dash, "Unpriced tokens")), "model") == unpriced


def test_detailed_ledger_health(stack: Stack) -> None:
    from token_tracker import __version__

    dash = dashboards()["token-spend-detailed.json"]
    assert stack.scalar(q(panel_by_title(dash, "Ledger records"))) == len(stack.requests)
    assert stack.scalar(q(panel_by_title(dash, "Torn-tail recoveries"))) == 0
    assert 0 <= stack.scalar(q(panel_by_title(dash, "Last record age"))) < 120
    assert stack.scalar(q(panel_by_title(dash, "Ledger size"))) > 0
    version = stack.query(q(panel_by_title(dash, "Exporter version")))
    assert [s["metric"]["version"] for s in version] == [__version__]


def test_model_and_session_variables_filter(stack: Stack) -> None:
    """Grafana formats a multi-value selection as an escaped regex alternation."""
    dash = dashboards()["token-spend-detailed.json"]
    models = stack.after["models"]
    picked = ["claude-haiku-4.5", "claude-sonnet-4.5"]
    regex = "(" + "|".join(re.escape(m).replace("\\", "\\\\") for m in picked) + ")"
    cost = stack.scalar(q(panel_by_title(dash, "Cost · all time"), model=regex))
    assert cost == pytest.approx(sum(models[m]["Cost"] for m in picked), abs=1e-9)
    table = panel_by_title(dash, "Sessions")
    got = stack.by(q(table, "D", session="docs-pass"), "session_id")
    assert got == pytest.approx({"docs-pass": stack.after["sessions"]["docs-pass"].total_cost_usd})
    # sessions with no sonnet usage drop out when only sonnet is selected
    sonnet = stack.by(q(table, "D", model="claude-sonnet-4\\\\.5"), "session_id")
    want = {
        sid: s.models["claude-sonnet-4.5"].cost_usd
        for sid, s in stack.after["sessions"].items()
        if "claude-sonnet-4.5" in s.models
    }
    assert sonnet == pytest.approx(want, abs=1e-9)


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
