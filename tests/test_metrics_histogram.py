"""TrackerMetrics' GenAI semantic-convention histogram: gen_ai.client.token.usage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from _models import HAIKU, SONNET
from token_tracker import TokenTracker
from token_tracker.exporter import build_meter_provider
from token_tracker.exposition import PrometheusTextReader
from token_tracker.metrics import MetricsOptions, TrackerMetrics


def test_genai_histogram(make_tracker: Callable[[], TokenTracker]) -> None:
    tracker = make_tracker()
    reader = PrometheusTextReader()
    provider = build_meter_provider([reader])
    try:
        TrackerMetrics(tracker, provider, MetricsOptions(provider_name="anthropic"))
        reader.render()  # the exporter has started and caught up
        tracker.track_request("s", SONNET, 3000, 20)
        tracker.track_request("s", SONNET, 10, 700)
        other = make_tracker()
        other.track_request("o", HAIKU, 5, 5)  # another process's request counts too
        text = reader.render()[0].decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
    finally:
        provider.shutdown()
    hist = families["gen_ai_client_token_usage"]
    assert hist.type == "histogram"
    by_series: dict[tuple[str, str], dict[str, Any]] = {}
    for sample in hist.samples:
        lbl = dict(sample.labels)
        assert lbl.pop("gen_ai_provider_name") == "anthropic"
        assert lbl.pop("gen_ai_operation_name") == "chat"
        series = by_series.setdefault(
            (lbl.pop("gen_ai_request_model"), lbl.pop("gen_ai_token_type")), {"buckets": {}}
        )
        if sample.name.endswith("_bucket"):
            series["buckets"][float(lbl.pop("le"))] = sample.value
        else:
            series[sample.name.rsplit("_", 1)[1]] = sample.value
        assert lbl == {}
    assert set(by_series) == {
        (SONNET, "input"),
        (SONNET, "output"),
        (HAIKU, "input"),
        (HAIKU, "output"),
    }
    sonnet_in = by_series[(SONNET, "input")]
    assert sonnet_in["count"] == 2
    assert sonnet_in["sum"] == 3010
    assert sonnet_in["buckets"][16.0] == 1
    assert sonnet_in["buckets"][4096.0] == 2
    assert sonnet_in["buckets"][float("inf")] == 2
    sonnet_out = by_series[(SONNET, "output")]
    assert (sonnet_out["count"], sonnet_out["sum"]) == (2, 720)
    assert sonnet_out["buckets"][16.0] == 0
    assert sonnet_out["buckets"][64.0] == 1
    assert by_series[(HAIKU, "input")]["count"] == 1
    assert by_series[(HAIKU, "output")]["sum"] == 5
    # Buckets are cumulative.
    for series in by_series.values():
        counts = [series["buckets"][b] for b in sorted(series["buckets"])]
        assert counts == sorted(counts)
