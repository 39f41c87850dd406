"""The Prometheus stack of the end-to-end tests: the exporter over a generated ledger,
scraped by a real Prometheus.

Prometheus runs with the repo's prometheus/prometheus.yml (scrape and evaluation
interval 1s, targets rewritten to loopback, no Alertmanager) and the repo's rule files.
The ``stack`` fixture is session-scoped and registered once, from tests/conftest.py
(``pytest_plugins``), so test_stack_e2e.py and test_stack_panels.py share one stack.
"""

from __future__ import annotations

import calendar
import json
import math
import subprocess
import sys
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from _monitoring import PROMETHEUS_DIR, prometheus_rules
from _serve_process import Serve, free_port, http
from _tools import require_tool

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


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = DEADLINE,
    procs: tuple[subprocess.Popen[Any], ...] = (),
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


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


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
        status, _, body = http(url)
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


@pytest.fixture(scope="session")
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

    prometheus_log = tmp / "prometheus.log"
    procs: list[subprocess.Popen[Any]] = []
    exporter: Serve | None = None
    try:
        exporter = Serve(ledger, 0, "--session-ttl", "0")
        procs.append(exporter.proc)
        exporter.wait_ready(timeout=DEADLINE)
        exporter_port = int(exporter.url.rsplit(":", 1)[1])

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
        wait_for("Prometheus ready", lambda: http(url + "/-/ready")[0] == 200, procs=(prom,))
        s = Stack(url, exporter.url, ledger, requests=list(BASELINE))
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
        if exporter is not None:
            sys.stderr.write(f"--- exporter stderr\n{''.join(exporter.stderr)[-4000:]}\n")
        if prometheus_log.exists():
            sys.stderr.write(f"--- {prometheus_log.name}\n{prometheus_log.read_text()[-4000:]}\n")
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
