"""A /metrics scrape of 10,000 sessions x 1 model over HTTP (issue 3: <= 3x).

Ours: ``token-tracker``'s exporter (OTel observable instruments, our
``PrometheusTextReader``, our HTTP server) on a ledger of 10,000 sessions, every
session exported (``session_ttl=0``). Baseline, side by side: a bare
prometheus_client custom collector serving the same series (same names, labels
and values) with prometheus_client's own HTTP server. Both are fetched with the
same urllib client on 127.0.0.1; the time is the whole request.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from _harness import Config, Result, interleaved
from token_tracker import TokenTracker
from token_tracker.metrics import MetricsOptions

SESSIONS = 10_000
MODEL = "claude-sonnet-4.5"


class _BareCollector:
    """The same per-session series, straight from a dict: the floor."""

    def __init__(self, rows: list[tuple[str, list[float]]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        names = ("input_tokens", "output_tokens", "cached_tokens", "cost_usd", "requests")
        for index, name in enumerate(names):
            family = CounterMetricFamily(
                f"token_tracker_session_{name}", "per session", labels=["session_id", "model"]
            )
            for sid, values in self.rows:
                family.add_metric([sid, MODEL], values[index])
            yield family
        last = GaugeMetricFamily(
            "token_tracker_session_last_request_timestamp_seconds", "last", labels=["session_id"]
        )
        for sid, values in self.rows:
            last.add_metric([sid], values[5])
        yield last


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()  # type: ignore[no-any-return]


def _session_series(body: bytes) -> int:
    count = 0
    for family in text_string_to_metric_families(body.decode()):
        if family.name.startswith("token_tracker_session_"):
            count += sum(1 for s in family.samples if not s.name.endswith("_created"))
    return count


def scrape(cfg: Config) -> list[Result]:
    rounds = cfg.rounds(9, 5)
    with tempfile.TemporaryDirectory(prefix="tt-bench-") as d:
        tracker = TokenTracker(Path(d) / "ledger.json")
        for i in range(SESSIONS):
            tracker.track_request(f"session-{i:05d}", MODEL, 1000 + i, 200, 100)
        handle = tracker.start_exporter(
            listen_address="127.0.0.1:0", options=MetricsOptions(session_ttl=0)
        )
        assert handle.url is not None
        ours_url = handle.url + "/metrics"

        rows: list[tuple[str, list[Any]]] = [
            (
                sid,
                [
                    s.total_usage.input_tokens,
                    s.total_usage.output_tokens,
                    s.total_usage.cached_tokens,
                    s.total_cost_usd,
                    s.request_count,
                    s.last_updated,
                ],
            )
            for sid, s in tracker.get_all_sessions().items()
        ]
        registry = CollectorRegistry()
        registry.register(_BareCollector(rows))  # type: ignore[arg-type]
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        base_url = f"http://127.0.0.1:{server.server_port}/metrics"
        try:
            ours_series = _session_series(_fetch(ours_url))
            base_series = _session_series(_fetch(base_url))
            if ours_series != base_series or ours_series != 6 * SESSIONS:
                raise AssertionError(f"series differ: ours {ours_series}, bare {base_series}")

            def side(url: str) -> Any:
                def run() -> float:
                    t0 = time.perf_counter_ns()
                    _fetch(url)
                    return float(time.perf_counter_ns() - t0)

                return run

            ours_ns, base_ns = interleaved(side(ours_url), side(base_url), rounds, warmup=2)
        finally:
            server.shutdown()
            handle.stop()
            tracker.close()
    return [
        Result(
            name=f"scrape /metrics, {SESSIONS:,} sessions x 1 model ({ours_series:,} series)",
            ours_label="token-tracker exporter (OTel + PrometheusTextReader)",
            base_label="bare prometheus_client custom collector",
            ours_ns=ours_ns,
            base_ns=base_ns,
            unit="per scrape",
            max_ratio=3.0,
            target="<= 3x",
        )
    ]
