"""OTLP push: the standard env variables add a push reader; a local receiver decodes it."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from opentelemetry.proto.metrics.v1 import metrics_pb2

from token_tracker import TokenTracker
from token_tracker.exporter import Exporter, otlp_reader_from_env
from token_tracker.pricing import NANO_PER_USD
from token_tracker.state import COST, IN, OUT, REQUESTS

SONNET = "claude-sonnet-4.5"
HAIKU = "claude-haiku-4.5"
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


class Receiver:
    """A minimal OTLP/HTTP metrics receiver on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.encodings: list[str | None] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                request = pb.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    receiver.paths.append(self.path)
                    receiver.encodings.append(encoding)
                    receiver.requests.append(request)
                reply = pb.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def last(self) -> Any:
        with self._lock:
            assert self.requests, "the receiver got nothing"
            return self.requests[-1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def metrics_by_name(request: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                assert metric.name not in out, f"{metric.name} sent twice"
                out[metric.name] = metric
    return out


def attrs(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def point_value(point: Any) -> float:
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


def sum_points(metric: Any) -> dict[frozenset[tuple[str, str]], float]:
    assert metric.WhichOneof("data") == "sum", metric.name
    assert metric.sum.aggregation_temporality == CUMULATIVE, metric.name
    assert metric.sum.is_monotonic, metric.name
    return {frozenset(attrs(p).items()): point_value(p) for p in metric.sum.data_points}


@pytest.fixture
def otlp_env(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Receiver:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")  # pushes only when flushed
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "10")
    for name in (
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ):
        monkeypatch.delenv(name, raising=False)
    return receiver


@pytest.fixture
def exporters() -> Iterator[list[tuple[Exporter, TokenTracker]]]:
    made: list[tuple[Exporter, TokenTracker]] = []
    yield made
    for exporter, tracker in made:
        exporter.shutdown()
        tracker.close()


def expected_per_model(path: Path, index: int, scale: float = 1) -> dict[Any, float]:
    with TokenTracker(path) as fresh:
        state, _ = fresh._read_state()
        return {frozenset({("model", m)}): t[index] / scale for m, t in state.models.items()}


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_push_equals_the_ledger(
    ledger_path: Path,
    otlp_env: Receiver,
    exporters: list[tuple[Exporter, TokenTracker]],
    monkeypatch: pytest.MonkeyPatch,
    compression: str | None,
) -> None:
    if compression:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    tracker = TokenTracker(ledger_path)
    exporter = Exporter(tracker)
    exporters.append((exporter, tracker))
    tracker.track_request("s1", SONNET, 1500, 800, 400)
    tracker.track_request("s2", HAIKU, 300, 30)
    with TokenTracker(ledger_path) as other:  # another writer on the same ledger
        other.track_request("s3", SONNET, 7, 9)

    assert exporter.meter_provider.force_flush(timeout_millis=15_000)
    request = otlp_env.last()
    assert otlp_env.paths[-1] == "/v1/metrics"
    assert otlp_env.encodings[-1] == compression
    resource = {
        kv.key: kv.value.string_value for kv in request.resource_metrics[0].resource.attributes
    }
    assert resource["service.name"] == "token-tracker-exporter"
    metrics = metrics_by_name(request)

    cost = sum_points(metrics["token_tracker_cost_usd"])
    assert cost == expected_per_model(ledger_path, COST, NANO_PER_USD)
    assert cost[frozenset({("model", SONNET)})] > 0
    inputs = sum_points(metrics["token_tracker_input_tokens"])
    assert inputs == expected_per_model(ledger_path, IN)
    assert inputs == {frozenset({("model", SONNET)}): 1507, frozenset({("model", HAIKU)}): 300}
    assert sum_points(metrics["token_tracker_output_tokens"]) == expected_per_model(
        ledger_path, OUT
    )
    assert sum_points(metrics["token_tracker_requests"]) == expected_per_model(
        ledger_path, REQUESTS
    )
    session_cost = sum_points(metrics["token_tracker_session_cost_usd"])
    assert sum(session_cost.values()) == pytest.approx(sum(cost.values()), abs=1e-12)
    hist = metrics["gen_ai.client.token.usage"]
    assert hist.WhichOneof("data") == "histogram"
    assert hist.unit == "{token}"
    assert hist.histogram.aggregation_temporality == CUMULATIVE


def test_pushes_stay_cumulative(
    ledger_path: Path, otlp_env: Receiver, exporters: list[tuple[Exporter, TokenTracker]]
) -> None:
    tracker = TokenTracker(ledger_path)
    exporter = Exporter(tracker)
    exporters.append((exporter, tracker))
    tracker.track_request("s1", SONNET, 100, 10)
    assert exporter.meter_provider.force_flush(timeout_millis=15_000)
    first = sum_points(metrics_by_name(otlp_env.last())["token_tracker_input_tokens"])
    assert first == {frozenset({("model", SONNET)}): 100}
    tracker.track_request("s1", SONNET, 50, 10)
    assert exporter.meter_provider.force_flush(timeout_millis=15_000)
    second = sum_points(metrics_by_name(otlp_env.last())["token_tracker_input_tokens"])
    assert second == {frozenset({("model", SONNET)}): 150}  # the total, not the delta
    assert second == expected_per_model(ledger_path, IN)


def test_restart_pushes_persisted_totals(
    ledger_path: Path, otlp_env: Receiver, exporters: list[tuple[Exporter, TokenTracker]]
) -> None:
    with TokenTracker(ledger_path) as writer:
        writer.track_request("old", SONNET, 4000, 10)
    tracker = TokenTracker(ledger_path)
    exporter = Exporter(tracker)
    exporters.append((exporter, tracker))
    assert exporter.meter_provider.force_flush(timeout_millis=15_000)
    pushed = sum_points(metrics_by_name(otlp_env.last())["token_tracker_input_tokens"])
    assert pushed == {frozenset({("model", SONNET)}): 4000}


def test_shutdown_pushes_a_last_export(ledger_path: Path, otlp_env: Receiver) -> None:
    tracker = TokenTracker(ledger_path)
    exporter = Exporter(tracker)
    try:
        tracker.track_request("s", HAIKU, 11, 22)
    finally:
        exporter.shutdown()
        tracker.close()
    pushed = sum_points(metrics_by_name(otlp_env.last())["token_tracker_output_tokens"])
    assert pushed == {frozenset({("model", HAIKU)}): 22}


def test_no_push_reader_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", raising=False)
    assert otlp_reader_from_env() is None
