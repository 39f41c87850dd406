"""PrometheusTextReader: Prometheus text and OpenMetrics that real parsers and promtool accept."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from _tools import require_tool
from token_tracker import TokenTracker
from token_tracker.exporter import build_meter_provider
from token_tracker.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    PrometheusTextReader,
)
from token_tracker.metrics import MetricsOptions, TrackerMetrics
from token_tracker.pricing import NANO_PER_USD
from token_tracker.state import COST, IN, OUT, REQUESTS

MODEL = "claude-sonnet-4.5"
OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0"
ODD_IDS = [
    'we"ird',
    "back\\slash",
    "new\nline",
    "emoji \U0001f680 caf\u00e9 \u4e2d\u6587",
    "brace} comma, equals=",
    'all"of\\them\n}{,=',
    "trailing backslash\\",
    "\\n is not a newline",
    "carriage\rreturn\ttab",
]


class Setup:
    def __init__(self, path: Path, *, scope_labels: bool = False, **options: Any) -> None:
        self.tracker = TokenTracker(path)
        self.reader = PrometheusTextReader(scope_labels=scope_labels)
        self.provider = build_meter_provider([self.reader])
        options_ = MetricsOptions(**options)
        self.metrics = TrackerMetrics(self.tracker, self.provider, options_, version="9.9.9")

    def text(self) -> str:
        body, content_type = self.reader.render(None)
        assert content_type == TEXT_CONTENT_TYPE
        return body.decode("utf-8")

    def openmetrics(self) -> str:
        body, content_type = self.reader.render(OPENMETRICS_ACCEPT)
        assert content_type == OPENMETRICS_CONTENT_TYPE
        return body.decode("utf-8")

    def close(self) -> None:
        self.provider.shutdown()
        self.tracker.close()


@pytest.fixture
def setup(ledger_path: Path) -> Iterator[Setup]:
    s = Setup(ledger_path)
    yield s
    s.close()


def samples(families: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in families:  # type: ignore[attr-defined]
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def session_ids(families: object, name: str) -> list[str]:
    return [
        s.labels["session_id"]
        for f in families  # type: ignore[attr-defined]
        for s in f.samples
        if s.name == name
    ]


def test_text_parses_with_prometheus_client(setup: Setup) -> None:
    setup.tracker.track_request("s1", MODEL, 1500, 800, 400)
    setup.tracker.track_request("s2", "claude-haiku-4.5", 100, 50)
    text = setup.text()
    families = {f.name: f for f in parse_text(text)}
    assert families["token_tracker_input_tokens"].type == "counter"
    assert families["token_tracker_sessions"].type == "gauge"
    assert families["gen_ai_client_token_usage"].type == "histogram"
    values = samples(parse_text(text))
    assert values[("token_tracker_input_tokens_total", frozenset({("model", MODEL)}))] == 1500
    assert values[("token_tracker_sessions", frozenset())] == 2
    assert text.endswith("\n")
    assert "# EOF" not in text


def test_openmetrics_parses_and_ends_with_eof(setup: Setup) -> None:
    setup.tracker.track_request("s1", MODEL, 1500, 800, 400)
    setup.tracker.track_request("s2", "claude-haiku-4.5", 100, 50)
    text = setup.openmetrics()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["token_tracker_input_tokens"].type == "counter"
    assert families["gen_ai_client_token_usage"].type == "histogram"
    values = samples(parse_openmetrics(text))
    assert values[("token_tracker_input_tokens_total", frozenset({("model", MODEL)}))] == 1500
    assert values[("token_tracker_output_tokens_total", frozenset({("model", MODEL)}))] == 800
    # The same series and values as the text format.
    assert values == samples(parse_text(setup.text()))


def test_plain_accept_headers_get_text(setup: Setup) -> None:
    setup.tracker.track_request("s1", MODEL, 1, 1)
    for accept in (None, "", "*/*", "text/plain", "text/plain;version=0.0.4"):
        body, content_type = setup.reader.render(accept)
        assert content_type == TEXT_CONTENT_TYPE
        assert not body.endswith(b"# EOF\n")


@pytest.mark.parametrize("fmt", ["text", "openmetrics"])
def test_odd_session_ids_round_trip(setup: Setup, fmt: str) -> None:
    for n, sid in enumerate(ODD_IDS):
        setup.tracker.track_request(sid, MODEL, 100 + n, 10)
    if fmt == "text":
        families = list(parse_text(setup.text()))
    else:
        families = list(parse_openmetrics(setup.openmetrics()))
    for name in (
        "token_tracker_session_input_tokens_total",
        "token_tracker_session_output_tokens_total",
        "token_tracker_session_cost_usd_total",
        "token_tracker_session_last_request_timestamp_seconds",
    ):
        assert sorted(session_ids(families, name)) == sorted(ODD_IDS), name
    values = samples(families)
    for n, sid in enumerate(ODD_IDS):
        key = frozenset({("session_id", sid), ("model", MODEL)})
        assert values[("token_tracker_session_input_tokens_total", key)] == 100 + n


def test_odd_model_names_round_trip(setup: Setup) -> None:
    models = ['m"odel', "mo\\del", "mo\ndel", "m\u00f6del \U0001f916"]
    for model in models:
        setup.tracker.track_request("s", model, 7, 3)
    values = samples(parse_text(setup.text()))
    for model in models:
        assert values[("token_tracker_input_tokens_total", frozenset({("model", model)}))] == 7
        assert values[("token_tracker_unpriced_tokens_total", frozenset({("model", model)}))] == 10


def test_promtool_check_metrics(setup: Setup) -> None:
    promtool = require_tool("promtool")
    for n, sid in enumerate(ODD_IDS):
        setup.tracker.track_request(sid, MODEL, 100 + n, 10, 5)
    setup.tracker.track_request("unpriced", "some-unknown-model", 1, 1)
    text = setup.text()
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_no_scope_labels_by_default(setup: Setup) -> None:
    setup.tracker.track_request("s", MODEL, 1, 1)
    assert "otel_scope" not in setup.text()
    assert "otel_scope" not in setup.openmetrics()
    for family in parse_text(setup.text()):
        for s in family.samples:
            assert not any(k.startswith("otel_") for k in s.labels)


def test_scope_labels_when_asked(ledger_path: Path) -> None:
    s = Setup(ledger_path, scope_labels=True)
    try:
        s.tracker.track_request("s", MODEL, 1, 1)
        text = s.text()
        families = list(parse_text(text))
        assert families
        for family in families:
            for sample in family.samples:
                assert sample.labels["otel_scope_name"] == "token_tracker", sample
                assert sample.labels["otel_scope_version"] == "9.9.9", sample
        # Still valid OpenMetrics with the extra labels (also on histogram buckets).
        om = list(parse_openmetrics(s.openmetrics()))
        assert {f.name for f in om} == {f.name for f in families}
    finally:
        s.close()


def test_more_than_2000_sessions_no_overflow(setup: Setup) -> None:
    count = 2500
    for n in range(count):
        setup.tracker.track_request(f"session-{n}", MODEL, n + 1, 2 * n + 1)
    text = setup.text()
    assert "otel_metric_overflow" not in text
    families = list(parse_text(text))
    values = samples(families)
    state, _ = setup.tracker._read_state()
    for n in range(count):
        key = frozenset({("session_id", f"session-{n}"), ("model", MODEL)})
        totals = state.sessions[f"session-{n}"].models[MODEL]
        assert values[("token_tracker_session_input_tokens_total", key)] == n + 1
        assert values[("token_tracker_session_output_tokens_total", key)] == 2 * n + 1
        assert values[("token_tracker_session_requests_total", key)] == 1
        assert values[("token_tracker_session_cost_usd_total", key)] == totals[COST] / NANO_PER_USD
    names = [
        "token_tracker_session_input_tokens_total",
        "token_tracker_session_cost_usd_total",
        "token_tracker_session_last_request_timestamp_seconds",
    ]
    for name in names:
        assert len(session_ids(families, name)) == count, name
    model = frozenset({("model", MODEL)})
    totals = state.models[MODEL]
    assert values[("token_tracker_input_tokens_total", model)] == totals[IN]
    assert values[("token_tracker_output_tokens_total", model)] == totals[OUT]
    assert values[("token_tracker_requests_total", model)] == totals[REQUESTS] == count
    assert values[("token_tracker_sessions", frozenset())] == count
    # A second scrape is just as complete (the label cache must not lose series).
    assert samples(parse_text(setup.text())) == values


def test_empty_ledger_renders_valid_output(setup: Setup) -> None:
    text = setup.text()
    values = samples(parse_text(text))
    assert values[("token_tracker_sessions", frozenset())] == 0
    assert values[("token_tracker_ledger_records_total", frozenset())] == 0
    assert setup.openmetrics().endswith("# EOF\n")
    list(parse_openmetrics(setup.openmetrics()))
