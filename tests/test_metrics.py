"""TrackerMetrics: values equal the ledger, follow other processes, survive restarts, prune."""

from __future__ import annotations

import os
import subprocess
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from conftest import PYTHON, subprocess_env
from token_tracker import TokenTracker, __version__
from token_tracker.exporter import Exporter, build_meter_provider
from token_tracker.exposition import PrometheusTextReader
from token_tracker.metrics import MetricsOptions, TrackerMetrics
from token_tracker.pricing import NANO_PER_USD
from token_tracker.state import CACHED, COST, CREATED, IN, OUT, REQUESTS, SAVINGS, UNPRICED

SONNET = "claude-sonnet-4.5"
HAIKU = "claude-haiku-4.5"
Values = dict[tuple[str, frozenset[tuple[str, str]]], float]

PER_MODEL = {
    "token_tracker_input_tokens_total": (IN, 1),
    "token_tracker_output_tokens_total": (OUT, 1),
    "token_tracker_cached_tokens_total": (CACHED, 1),
    "token_tracker_cache_creation_tokens_total": (CREATED, 1),
    "token_tracker_cost_usd_total": (COST, NANO_PER_USD),
    "token_tracker_requests_total": (REQUESTS, 1),
    "token_tracker_cache_savings_usd_total": (SAVINGS, NANO_PER_USD),
    "token_tracker_unpriced_tokens_total": (UNPRICED, 1),
}
PER_SESSION = {
    "token_tracker_session_input_tokens_total": (IN, 1),
    "token_tracker_session_output_tokens_total": (OUT, 1),
    "token_tracker_session_cached_tokens_total": (CACHED, 1),
    "token_tracker_session_cost_usd_total": (COST, NANO_PER_USD),
    "token_tracker_session_requests_total": (REQUESTS, 1),
}
SESSION_FAMILIES = (*PER_SESSION, "token_tracker_session_last_request_timestamp_seconds")


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def parse(text: str) -> Values:
    out: Values = {}
    for family in parse_text(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def family(values: Values, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {lbl: v for (n, lbl), v in values.items() if n == name}


class Scraper:
    """An Exporter's reader over a tracker, the way `serve` builds it."""

    def __init__(self, path: Path, options: MetricsOptions | None = None) -> None:
        self.tracker = TokenTracker(path)
        self.exporter = Exporter(self.tracker, options, otlp=False)

    def scrape(self) -> Values:
        body, _ = self.exporter.render_metrics(None)
        return parse(body.decode("utf-8"))

    def close(self) -> None:
        self.exporter.shutdown()
        self.tracker.close()


@pytest.fixture
def scrapers() -> Iterator[list[Scraper]]:
    made: list[Scraper] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def trackers() -> Iterator[list[TokenTracker]]:
    made: list[TokenTracker] = []
    yield made
    for t in made:
        t.close()


def assert_equals_ledger(values: Values, path: Path, *, sessions: bool = True) -> None:
    """Every per-model and per-session value equals a fresh reader's view of the ledger."""
    with TokenTracker(path) as fresh:
        state, _ = fresh._read_state()
        assert state.models, "nothing recorded"
        for name, (index, scale) in PER_MODEL.items():
            expected = {labels(model=m): t[index] / scale for m, t in state.models.items()}
            assert family(values, name) == expected, name
        if sessions:
            for name, (index, scale) in PER_SESSION.items():
                expected = {
                    labels(session_id=sid, model=m): t[index] / scale
                    for sid, s in state.sessions.items()
                    for m, t in s.models.items()
                }
                assert family(values, name) == expected, name
            last = family(values, "token_tracker_session_last_request_timestamp_seconds")
            assert last == {
                labels(session_id=sid): s.last_updated for sid, s in state.sessions.items()
            }
        assert values[("token_tracker_sessions", frozenset())] == len(state.sessions)
        assert values[("token_tracker_ledger_records_total", frozenset())] == state.records
        assert (
            values[("token_tracker_ledger_recovered_tail_total", frozenset())]
            == state.recovered_tail
        )
        assert (
            values[("token_tracker_ledger_last_record_timestamp_seconds", frozenset())]
            == state.last_record_ts
        )


def record_some(tracker: TokenTracker) -> None:
    tracker.track_request("alpha", SONNET, 1500, 800, 400)
    tracker.track_request("alpha", SONNET, 2000, 100, 0, cache_creation_tokens=500)
    tracker.track_request("alpha", HAIKU, 300, 30, 100)
    tracker.track_request("beta", HAIKU, 10, 20)
    tracker.track_request("gamma", "unknown-model-x", 5, 6)


def test_values_equal_the_ledger(ledger_path: Path, scrapers: list[Scraper]) -> None:
    s = Scraper(ledger_path)
    scrapers.append(s)
    record_some(s.tracker)
    values = s.scrape()
    assert_equals_ledger(values, ledger_path)
    # Spot-check absolute numbers, independent of the state internals.
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 3500
    assert values[("token_tracker_cached_tokens_total", labels(model=SONNET))] == 400
    assert values[("token_tracker_cache_creation_tokens_total", labels(model=SONNET))] == 500
    assert values[("token_tracker_requests_total", labels(model=SONNET))] == 2
    assert values[("token_tracker_unpriced_tokens_total", labels(model="unknown-model-x"))] == 11
    assert values[("token_tracker_cost_usd_total", labels(model="unknown-model-x"))] == 0
    assert values[("token_tracker_sessions", frozenset())] == 3
    assert values[("token_tracker_ledger_records_total", frozenset())] == 5
    assert (
        values[("token_tracker_session_requests_total", labels(session_id="alpha", model=HAIKU))]
        == 1
    )
    # The cost equals the tracker's own session total, to the nano-dollar.
    alpha = s.tracker.get_session_usage("alpha")
    assert alpha is not None
    got = sum(
        v
        for lbl, v in family(values, "token_tracker_session_cost_usd_total").items()
        if ("session_id", "alpha") in lbl
    )
    assert round(got * NANO_PER_USD) == round(alpha.total_cost_usd * NANO_PER_USD)


def test_gauges_prices_budgets_ledger_and_build_info(
    ledger_path: Path, scrapers: list[Scraper]
) -> None:
    s = Scraper(ledger_path)
    scrapers.append(s)
    record_some(s.tracker)
    values = s.scrape()
    prices = family(values, "token_tracker_price_usd_per_token")
    expected = {
        labels(model=model, kind=kind): usd
        for model, price in s.tracker.prices.items()
        for kind, usd in price.per_token_usd().items()
    }
    assert prices == expected
    assert {dict(lbl)["kind"] for lbl in prices} == {"input", "output", "cached", "cache_creation"}
    assert prices[labels(model=SONNET, kind="input")] == pytest.approx(3e-6, rel=1e-12)
    assert prices[labels(model=SONNET, kind="output")] == pytest.approx(15e-6, rel=1e-12)
    budgets = family(values, "token_tracker_budget_usd")
    assert budgets[labels(scope="session")] == 1.0  # the seed's cost alert
    assert set(budgets) == {labels(scope="session"), labels(scope="day"), labels(scope="month")}
    size = sum(
        os.stat(p).st_size for p in (ledger_path, Path(f"{ledger_path}.journal")) if p.exists()
    )
    assert values[("token_tracker_ledger_size_bytes", frozenset())] == size > 0
    last = max(x.last_updated for x in s.tracker.get_all_sessions().values())
    assert values[("token_tracker_ledger_last_record_timestamp_seconds", frozenset())] == last
    assert values[("token_tracker_ledger_recovered_tail_total", frozenset())] == 0
    assert family(values, "token_tracker_build_info") == {labels(version=__version__): 1}


def test_configured_budgets(ledger_path: Path, scrapers: list[Scraper]) -> None:
    options = MetricsOptions(budgets={"session": 2.5, "day": 0.0, "month": 1234.5})
    s = Scraper(ledger_path, options)
    scrapers.append(s)
    budgets = family(s.scrape(), "token_tracker_budget_usd")
    assert budgets == {
        labels(scope="session"): 2.5,
        labels(scope="day"): 0.0,
        labels(scope="month"): 1234.5,
    }


def test_recovered_tail_is_counted(ledger_path: Path, scrapers: list[Scraper]) -> None:
    with TokenTracker(ledger_path) as t:
        t.track_request("s", SONNET, 10, 10)
    with open(f"{ledger_path}.journal", "ab") as f:
        f.write(b'["r",1.0,"torn')  # a writer killed mid-record
    s = Scraper(ledger_path)
    scrapers.append(s)
    values = s.scrape()
    assert values[("token_tracker_ledger_recovered_tail_total", frozenset())] == 1
    assert values[("token_tracker_ledger_records_total", frozenset())] == 1
    assert_equals_ledger(values, ledger_path)


def test_records_from_another_tracker_show_in_next_scrape(
    ledger_path: Path, scrapers: list[Scraper], trackers: list[TokenTracker]
) -> None:
    s = Scraper(ledger_path)
    scrapers.append(s)
    s.tracker.track_request("own", SONNET, 100, 10)
    first = s.scrape()
    other = TokenTracker(ledger_path)
    trackers.append(other)
    other.track_request("other", HAIKU, 7000, 300, 1000)
    other.track_request("own", SONNET, 50, 5)
    values = s.scrape()
    assert values[("token_tracker_input_tokens_total", labels(model=HAIKU))] == 7000
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 150
    assert values[("token_tracker_ledger_records_total", frozenset())] == 3
    assert ("token_tracker_input_tokens_total", labels(model=HAIKU)) not in first
    assert_equals_ledger(values, ledger_path)


def test_records_from_a_subprocess_show_in_next_scrape(
    ledger_path: Path, scrapers: list[Scraper]
) -> None:
    s = Scraper(ledger_path)
    scrapers.append(s)
    s.tracker.track_request("own", SONNET, 100, 10)
    s.scrape()
    code = (
        "import sys\n"
        "from token_tracker import TokenTracker\n"
        "with TokenTracker(sys.argv[1]) as t:\n"
        "    for i in range(50):\n"
        "        t.track_request('child', sys.argv[2], 100 + i, 10, 5)\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code, str(ledger_path), HAIKU],
        env=subprocess_env(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    values = s.scrape()
    assert values[("token_tracker_requests_total", labels(model=HAIKU))] == 50
    assert values[("token_tracker_input_tokens_total", labels(model=HAIKU))] == sum(
        100 + i for i in range(50)
    )
    assert (
        values[("token_tracker_session_requests_total", labels(session_id="child", model=HAIKU))]
        == 50
    )
    assert_equals_ledger(values, ledger_path)


def test_restart_continues_from_persisted_totals(
    ledger_path: Path, scrapers: list[Scraper], trackers: list[TokenTracker]
) -> None:
    writer = TokenTracker(ledger_path)
    trackers.append(writer)
    record_some(writer)
    first = Scraper(ledger_path)
    before = first.scrape()
    assert_equals_ledger(before, ledger_path)
    first.close()
    second = Scraper(ledger_path)
    scrapers.append(second)
    after = second.scrape()
    counters = {k: v for k, v in before.items() if k[0].endswith("_total")}
    assert counters
    assert {k: v for k, v in after.items() if k[0].endswith("_total")} == counters
    # Still no double counting after compaction folds the journal into the snapshot.
    writer.compact()
    third = Scraper(ledger_path)
    scrapers.append(third)
    assert {k: v for k, v in third.scrape().items() if k[0].endswith("_total")} == counters
    assert {k: v for k, v in second.scrape().items() if k[0].endswith("_total")} == counters
    # And new records add on top of the persisted totals.
    writer.track_request("alpha", SONNET, 1, 1)
    grown = second.scrape()
    key = ("token_tracker_input_tokens_total", labels(model=SONNET))
    assert grown[key] == before[key] + 1
    assert_equals_ledger(grown, ledger_path)


def test_counters_keep_spend_after_session_reset(
    ledger_path: Path, scrapers: list[Scraper]
) -> None:
    s = Scraper(ledger_path)
    scrapers.append(s)
    record_some(s.tracker)
    before = s.scrape()
    assert s.tracker.reset_session_usage("alpha")
    after = s.scrape()
    for name in PER_MODEL:
        assert family(after, name) == family(before, name), name
    assert not any(("session_id", "alpha") in lbl for (_, lbl) in after)


def _fake_time(now: float) -> Any:
    return types.SimpleNamespace(time=lambda: now)


def test_idle_session_is_pruned_model_totals_unchanged(
    ledger_path: Path, scrapers: list[Scraper], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Scraper(ledger_path, MetricsOptions(session_ttl=3600))
    scrapers.append(s)
    s.tracker.track_request("idle", SONNET, 1000, 100, 200)
    s.tracker.track_request("idle", HAIKU, 50, 5)
    idle_at = time.time()
    before = s.scrape()
    assert any(("session_id", "idle") in lbl for (_, lbl) in before)
    # Two hours later the idle session has had no request; "busy" just did.
    later = idle_at + 7200
    monkeypatch.setattr("token_tracker.metrics.time", _fake_time(later))
    monkeypatch.setattr("token_tracker.tracker.time", _fake_time(later))
    s.tracker.track_request("busy", SONNET, 10, 1)
    after = s.scrape()
    for name in SESSION_FAMILIES:
        sids = {dict(lbl)["session_id"] for lbl in family(after, name)}
        assert sids == {"busy"}, name
    # Per-model totals keep every token and cent of the pruned session.
    assert after[("token_tracker_input_tokens_total", labels(model=SONNET))] == 1010
    assert after[("token_tracker_input_tokens_total", labels(model=HAIKU))] == 50
    for name in PER_MODEL:
        for lbl, value in family(before, name).items():
            assert family(after, name)[lbl] >= value
    assert_equals_ledger(after, ledger_path, sessions=False)
    # The sessions gauge counts the ledger, pruning only limits the detail.
    assert after[("token_tracker_sessions", frozenset())] == 2


def test_ttl_with_old_records(ledger_path: Path, scrapers: list[Scraper]) -> None:
    """A tiny TTL and real waiting-free timestamps: records older than the TTL vanish."""
    writer = TokenTracker(ledger_path)
    try:
        writer.track_request("old", SONNET, 10, 1)
    finally:
        writer.close()
    s = Scraper(ledger_path, MetricsOptions(session_ttl=0.001))
    scrapers.append(s)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # bounded: at most a few ms are needed
        values = s.scrape()
        if not family(values, "token_tracker_session_input_tokens_total"):
            break
        time.sleep(0.01)
    assert family(values, "token_tracker_session_input_tokens_total") == {}
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 10


def test_ttl_zero_keeps_every_session(
    ledger_path: Path, scrapers: list[Scraper], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Scraper(ledger_path, MetricsOptions(session_ttl=0))
    scrapers.append(s)
    s.tracker.track_request("ancient", SONNET, 10, 1)
    monkeypatch.setattr("token_tracker.metrics.time", _fake_time(time.time() + 10 * 365 * 86400))
    values = s.scrape()
    assert family(values, "token_tracker_session_input_tokens_total") == {
        labels(session_id="ancient", model=SONNET): 10
    }


def test_max_sessions_keeps_most_recent(
    ledger_path: Path, scrapers: list[Scraper], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Scraper(ledger_path, MetricsOptions(max_sessions=3))
    scrapers.append(s)
    base = time.time()
    order = ["s0", "s1", "s2", "s3", "s4", "s5"]
    for n, sid in enumerate(order):
        monkeypatch.setattr("token_tracker.tracker.time", _fake_time(base + n))
        s.tracker.track_request(sid, SONNET, 100, 10)
    # s0 gets a new request last: it is the most recent now.
    monkeypatch.setattr("token_tracker.tracker.time", _fake_time(base + 10))
    s.tracker.track_request("s0", HAIKU, 1, 1)
    values = s.scrape()
    for name in SESSION_FAMILIES:
        sids = {dict(lbl)["session_id"] for lbl in family(values, name)}
        assert sids == {"s0", "s4", "s5"}, name
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 600
    assert values[("token_tracker_sessions", frozenset())] == 6


def test_max_sessions_zero_shows_none(ledger_path: Path, scrapers: list[Scraper]) -> None:
    s = Scraper(ledger_path, MetricsOptions(max_sessions=0))
    scrapers.append(s)
    s.tracker.track_request("a", SONNET, 1, 1)
    values = s.scrape()
    for name in SESSION_FAMILIES:
        assert family(values, name) == {}, name
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 1


def test_no_session_metrics_removes_the_families(
    ledger_path: Path, scrapers: list[Scraper]
) -> None:
    s = Scraper(ledger_path, MetricsOptions(session_metrics=False))
    scrapers.append(s)
    record_some(s.tracker)
    body, _ = s.exporter.render_metrics(None)
    text = body.decode()
    assert "token_tracker_session_" not in text
    assert "session_id" not in text
    values = parse(text)
    assert_equals_ledger(values, ledger_path, sessions=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"session_ttl": -1},
        {"max_sessions": -1},
        {"budgets": {"week": 1.0}},
        {"budgets": {"day": -1.0}},
        {"budgets": {"day": float("nan")}},
    ],
)
def test_invalid_options_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MetricsOptions(**kwargs)


def test_genai_histogram(ledger_path: Path, trackers: list[TokenTracker]) -> None:
    tracker = TokenTracker(ledger_path)
    trackers.append(tracker)
    reader = PrometheusTextReader()
    provider = build_meter_provider([reader])
    try:
        TrackerMetrics(tracker, provider, MetricsOptions(provider_name="anthropic"))
        reader.render()  # the exporter has started and caught up
        tracker.track_request("s", SONNET, 3000, 20)
        tracker.track_request("s", SONNET, 10, 700)
        other = TokenTracker(ledger_path)
        trackers.append(other)
        other.track_request("o", HAIKU, 5, 5)  # another process's request counts too
        families = {f.name: f for f in parse_text(reader.render()[0].decode())}
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


def test_stopped_exporters_detach_from_the_tracker(ledger_path: Path) -> None:
    """A host that starts and stops exporters must not pile up ledger listeners."""
    with TokenTracker(ledger_path) as tracker:
        before = list(tracker._ledger.listeners)
        for _ in range(3):
            handle = tracker.start_exporter(listen_address="127.0.0.1:0")
            assert handle.serving
            handle.stop()
        exporter = Exporter(tracker, otlp=False)
        exporter.shutdown()
        assert tracker._ledger.listeners == before
