"""The TokenTracker API: recording, reading back, unknown models, snapshots, threads."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from _models import HAIKU, OPUS, SONNET
from conftest import file_digests
from token_tracker import TokenTracker, TokenUsage, UnpricedModelError

# -- recording and reading back ---------------------------------------------------------


def test_track_request_returns_usage_and_cost(tracker: TokenTracker) -> None:
    req = tracker.track_request("session-123", SONNET, 1500, 800, cached_tokens=400)
    assert req.session_id == "session-123"
    assert req.model_name == SONNET
    assert req.usage == TokenUsage(1500, 800, 400, 0)
    assert req.usage.total_tokens == 2300
    assert req.cost_usd == 0.01542
    assert req.usage.cost_usd == 0.01542
    # 400 cached tokens saved 90% of 400 * 3e-6
    assert req.cost_savings_from_cache == 0.00108
    assert req.unpriced is False
    assert req.timestamp > 0


def test_cached_tokens_defaults_to_zero(tracker: TokenTracker) -> None:
    req = tracker.track_request("s", SONNET, 1000, 1000)
    assert req.usage.cached_tokens == 0
    assert req.cost_usd == 0.018


def test_cache_creation_keyword(tracker: TokenTracker) -> None:
    req = tracker.track_request("s", SONNET, 2000, 0, 500, cache_creation_tokens=1000)
    # 500 plain * 3e-6 + 500 cached * 0.3e-6 + 1000 created * 3.75e-6
    assert req.cost_usd == 0.0015 + 0.00015 + 0.00375
    assert req.usage.cache_creation_tokens == 1000
    session = tracker.get_session_usage("s")
    assert session is not None
    assert session.total_usage.cache_creation_tokens == 1000


def test_get_session_usage_fields(tracker: TokenTracker) -> None:
    assert tracker.get_session_usage("session-123") is None
    r1 = tracker.track_request("session-123", SONNET, 1500, 800, 400)
    r2 = tracker.track_request("session-123", SONNET, 1000, 200, 600)
    s = tracker.get_session_usage("session-123")
    assert s is not None
    assert s.session_id == "session-123"
    assert s.model_name == SONNET
    assert s.total_usage == TokenUsage(2500, 1000, 1000, 0)
    assert s.total_usage.total_tokens == 3500
    assert s.request_count == 2
    # 400 plain * 3e-6 + 600 cached * 0.3e-6 + 200 out * 15e-6
    assert r2.cost_usd == 0.00438
    # the session total is the exact sum of the requests' fixed costs
    assert s.total_cost_usd == 0.0198
    assert s.total_usage.cost_usd == s.total_cost_usd
    assert s.created_at == pytest.approx(r1.timestamp)
    assert s.last_updated == pytest.approx(r2.timestamp)
    assert s.created_at <= s.last_updated
    assert s.cache_hit_rate == 1000 / 2500
    assert s.cost_savings_from_cache == pytest.approx(1000 * 2.7e-6)
    assert s.unpriced_tokens == 0
    assert s.unpriced_models == []
    assert set(s.models) == {SONNET}
    assert s.models[SONNET].request_count == 2
    assert s.models[SONNET].usage == s.total_usage


def test_session_switching_models_is_priced_per_model(tracker: TokenTracker) -> None:
    tracker.track_request("s", SONNET, 1000, 1000)  # 0.003 + 0.015
    tracker.track_request("s", OPUS, 1000, 1000)  # 0.015 + 0.075
    tracker.track_request("s", "claude-haiku-4-5-20251001", 1000, 1000)  # 0.001 + 0.005
    s = tracker.get_session_usage("s")
    assert s is not None
    assert s.model_name == "claude-haiku-4-5-20251001"  # the latest model
    assert s.total_cost_usd == 0.018 + 0.09 + 0.006 == 0.114
    assert s.request_count == 3
    assert {m: mu.cost_usd for m, mu in s.models.items()} == {
        SONNET: 0.018,
        OPUS: 0.09,
        "claude-haiku-4-5-20251001": 0.006,
    }
    assert all(mu.request_count == 1 for mu in s.models.values())
    assert sum(mu.usage.total_tokens for mu in s.models.values()) == s.total_usage.total_tokens


def test_global_usage_and_cost(tracker: TokenTracker) -> None:
    assert tracker.get_global_usage() == TokenUsage()
    assert tracker.get_global_cost() == 0.0
    tracker.track_request("a", SONNET, 1500, 800, 400)
    tracker.track_request("b", OPUS, 3000, 500, 1000)
    tracker.track_request("b", HAIKU, 100, 100)
    g = tracker.get_global_usage()
    assert g == TokenUsage(4600, 1400, 1400, 0)
    assert g.total_tokens == 6000
    # opus: 2000 * 15e-6 + 1000 * 1.5e-6 + 500 * 75e-6 = 0.069 (the seed ledger's review-7)
    assert tracker.get_global_cost() == 0.08502  # exact, not a float sum (0.08502000000000001)


def test_reset_session_usage(tracker: TokenTracker, ledger_path: Path) -> None:
    tracker.track_request("a", SONNET, 1000, 1000)
    tracker.track_request("b", SONNET, 500, 500)
    assert tracker.reset_session_usage("a") is True
    assert tracker.reset_session_usage("a") is False
    assert tracker.reset_session_usage("never") is False
    assert tracker.get_session_usage("a") is None
    assert tracker.get_global_usage() == TokenUsage(500, 500)
    assert set(tracker.get_all_sessions()) == {"b"}
    tracker.track_request("a", SONNET, 1, 1)
    a = tracker.get_session_usage("a")
    assert a is not None and a.request_count == 1
    with TokenTracker(ledger_path) as again:
        assert again.get_global_usage() == TokenUsage(501, 501)
        assert again.get_session_usage("a").request_count == 1  # type: ignore[union-attr]


def test_reset_validates_session_id(tracker: TokenTracker) -> None:
    with pytest.raises(ValueError, match="session_id"):
        tracker.reset_session_usage("")
    with pytest.raises(TypeError, match="session_id"):
        tracker.reset_session_usage(None)  # type: ignore[arg-type]


def test_export_usage_report_shape(tracker: TokenTracker) -> None:
    tracker.track_request("research", SONNET, 1500, 800, 400)
    tracker.track_request("research", OPUS, 1000, 100)
    tracker.track_request("other", "mystery-model", 10, 5)
    report = tracker.export_usage_report()
    assert set(report) >= {"generated_at", "global_summary", "sessions", "model_pricing"}
    assert isinstance(report["generated_at"], float)
    json.loads(json.dumps(report))  # serialisable, strictly
    json.dumps(report, allow_nan=False)
    g = report["global_summary"]
    assert g["total_tokens"] == 2300 + 1100 + 15
    assert g["input_tokens"] == 2510
    assert g["output_tokens"] == 905
    assert g["cached_tokens"] == 400
    assert g["session_count"] == 2
    assert g["total_cost_usd"] == pytest.approx(0.01542 + 0.0225)
    assert g["unpriced_tokens"] == 15
    s = report["sessions"]["research"]
    assert s["session_id"] == "research"
    assert s["model_name"] == OPUS
    assert s["total_usage"]["total_tokens"] == 3400
    assert s["request_count"] == 2
    assert s["total_cost_usd"] == pytest.approx(0.03792)
    assert {"created_at", "last_updated", "cache_hit_rate", "cost_savings_from_cache"} <= set(s)
    assert set(s["models"]) == {SONNET, OPUS}
    for model, prices in {
        OPUS: (0.015, 0.075),
        SONNET: (0.003, 0.015),
        HAIKU: (0.001, 0.005),
    }.items():
        assert report["model_pricing"][model]["input"] == prices[0]
        assert report["model_pricing"][model]["output"] == prices[1]
    other = report["sessions"]["other"]
    assert other["unpriced_tokens"] == 15
    assert other["unpriced_models"] == ["mystery-model"]
    assert other["total_cost_usd"] == 0.0


# -- unknown models -------------------------------------------------------------------------


def test_unknown_model_is_recorded_unpriced(
    tracker: TokenTracker, ledger_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    req = tracker.track_request("s", "gpt-mystery", 100, 50, 10)
    assert req.unpriced is True
    assert req.cost_usd == 0.0
    assert req.usage.total_tokens == 150
    tracker.track_request("s", "gpt-mystery", 1, 1)
    tracker.track_request("s", SONNET, 1000, 1000)
    tracker.track_request("t", "other-mystery", 7, 3)
    tracker.track_request("t", "other-mystery", 7, 3)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("gpt-mystery" in r.getMessage() for r in warnings) == 1
    assert sum("other-mystery" in r.getMessage() for r in warnings) == 1
    s = tracker.get_session_usage("s")
    assert s is not None
    assert s.unpriced_tokens == 152
    assert s.unpriced_models == ["gpt-mystery"]
    assert s.models["gpt-mystery"].unpriced_tokens == 152
    assert s.models["gpt-mystery"].cost_usd == 0.0
    assert s.total_cost_usd == 0.018
    assert s.total_usage.input_tokens == 1101
    report = tracker.export_usage_report()
    assert report["global_summary"]["unpriced_tokens"] == 172
    assert report["sessions"]["t"]["unpriced_models"] == ["other-mystery"]
    with TokenTracker(ledger_path) as again:
        s2 = again.get_session_usage("s")
        assert s2 is not None and s2.unpriced_tokens == 152


def test_strict_pricing_raises_and_records_nothing(ledger_path: Path) -> None:
    with TokenTracker(ledger_path, strict_pricing=True) as t:
        t.track_request("s", SONNET, 1, 1)
        before = file_digests(ledger_path.parent)
        with pytest.raises(UnpricedModelError) as info:
            t.track_request("s", "gpt-mystery", 100, 50)
        assert isinstance(info.value, ValueError)
        assert "gpt-mystery" in str(info.value)
        assert file_digests(ledger_path.parent) == before
        assert t.get_global_usage() == TokenUsage(1, 1)
        s = t.get_session_usage("s")
        assert s is not None and s.request_count == 1


def test_cost_is_fixed_at_record_time(tmp_path: Path, ledger_path: Path) -> None:
    with TokenTracker(ledger_path) as t:
        t.track_request("s", SONNET, 1000, 1000)
        t.track_request("u", "new-model", 1000, 1000)
    prices = tmp_path / "p.toml"
    prices.write_text(
        '[models."claude-sonnet-4.5"]\ninput = 1\noutput = 1\n'
        '[models."new-model"]\ninput = 1\noutput = 1\n'
    )
    with TokenTracker(ledger_path, pricing=prices) as t:
        assert t.get_session_usage("s").total_cost_usd == 0.018  # type: ignore[union-attr]
        assert t.get_session_usage("u").total_cost_usd == 0.0  # type: ignore[union-attr]
        assert t.get_session_usage("u").unpriced_tokens == 2000  # type: ignore[union-attr]
        t.track_request("s", SONNET, 1000, 0)
        assert t.get_session_usage("s").total_cost_usd == 1.018  # type: ignore[union-attr]
        t.compact()
    with TokenTracker(ledger_path) as t:
        assert t.get_session_usage("s").total_cost_usd == 1.018  # type: ignore[union-attr]
        assert t.get_global_cost() == 1.018


# -- snapshots --------------------------------------------------------------------------------


def test_returned_objects_are_snapshots(tracker: TokenTracker) -> None:
    req = tracker.track_request("s", SONNET, 1000, 100)
    session = tracker.get_session_usage("s")
    g = tracker.get_global_usage()
    everything = tracker.get_all_sessions()
    report = tracker.export_usage_report()
    assert session is not None
    # later requests do not change what the caller holds
    tracker.track_request("s", OPUS, 5000, 500)
    tracker.track_request("t", SONNET, 1, 1)
    assert session.total_usage == TokenUsage(1000, 100)
    assert session.request_count == 1
    assert set(session.models) == {SONNET}
    assert session.model_name == SONNET
    assert g == TokenUsage(1000, 100)
    assert set(everything) == {"s"}
    assert report["global_summary"]["total_tokens"] == 1100
    assert req.usage == TokenUsage(1000, 100)
    # mutating them does not change the tracker
    session.total_usage.input_tokens = 10**9
    session.models[SONNET].usage.output_tokens = 10**9
    session.models.clear()
    g.input_tokens = -5
    everything.clear()
    report["sessions"]["s"]["total_usage"]["input_tokens"] = 0
    report["global_summary"]["total_tokens"] = 0
    req.usage.input_tokens = 0
    fresh = tracker.get_session_usage("s")
    assert fresh is not None
    assert fresh.total_usage == TokenUsage(6000, 600)
    assert set(fresh.models) == {SONNET, OPUS}
    assert tracker.get_global_usage() == TokenUsage(6001, 601)
    assert set(tracker.get_all_sessions()) == {"s", "t"}
    assert tracker.export_usage_report()["global_summary"]["total_tokens"] == 6602


def test_two_reads_are_independent(tracker: TokenTracker) -> None:
    tracker.track_request("s", SONNET, 10, 10)
    a = tracker.get_session_usage("s")
    b = tracker.get_session_usage("s")
    assert a is not None and b is not None
    assert a is not b and a.total_usage is not b.total_usage
    a.total_usage.input_tokens = 99
    assert b.total_usage.input_tokens == 10


# -- threads ----------------------------------------------------------------------------------


def test_eight_threads_ten_thousand_requests_each(ledger_path: Path) -> None:
    threads_n, per_thread = 8, 10_000
    errors: list[BaseException] = []
    with TokenTracker(ledger_path, journal_max_bytes=256 * 1024) as t:
        start = threading.Barrier(threads_n)

        def work(n: int) -> None:
            try:
                start.wait(timeout=30)
                for i in range(per_thread):
                    t.track_request(f"t{n % 4}", SONNET if i % 2 else HAIKU, 3, 2, 1)
                    if i % 2500 == 0:  # readers interleave with writers
                        t.get_global_usage()
                        t.get_session_usage(f"t{n % 4}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not any(th.is_alive() for th in threads), "threads did not finish: deadlock?"
        assert errors == []
        total = threads_n * per_thread
        assert t.get_global_usage() == TokenUsage(3 * total, 2 * total, total)
        sessions = t.get_all_sessions()
        assert {sid: s.request_count for sid, s in sessions.items()} == {
            f"t{k}": total // 4 for k in range(4)
        }
        # haiku: 2 plain * 1e-6 + 1 cached * 0.1e-6 + 2 out * 5e-6 = 12,100 nanodollars;
        # sonnet: 2 * 3e-6 + 0.3e-6 + 2 * 15e-6 = 36,300 nanodollars; 40,000 of each
        assert t.get_global_cost() == 40_000 * (12_100 + 36_300) / 1e9 == 1.936
    with TokenTracker(ledger_path) as again:
        assert again.get_global_usage() == TokenUsage(3 * total, 2 * total, total)
