"""The TokenTracker API: recording, reading back, validation, snapshots, threads, files."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import threading
from pathlib import Path

import pytest

from conftest import file_digests
from token_tracker import (
    LedgerError,
    TokenTracker,
    TokenUsage,
    UnpricedModelError,
    default_ledger_path,
)

SONNET = "claude-sonnet-4.5"
OPUS = "claude-opus-4.6"
HAIKU = "claude-haiku-4.5"


@pytest.fixture
def tracker(ledger_path: Path):
    with TokenTracker(ledger_path) as t:
        yield t


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


# -- where the ledger lives -----------------------------------------------------------------


def _ledger_files_exist(path: Path) -> bool:
    """The ledger is the snapshot at ``path`` plus ``path.journal`` beside it."""
    return Path(f"{path}.journal").is_file() or path.is_file()


def _reopened_tokens(path: Path) -> int:
    with TokenTracker(path) as t:
        return t.get_global_usage().total_tokens


def test_default_path_is_under_home(home: Path) -> None:
    expected = home / ".multi-term" / "token_usage.json"
    assert default_ledger_path() == expected
    with TokenTracker() as t:
        assert t.persistence_path == expected
        t.track_request("s", SONNET, 1, 1)
    assert _ledger_files_exist(expected)
    assert _reopened_tokens(expected) == 2
    assert stat.S_IMODE(expected.parent.stat().st_mode) == 0o700


def test_env_var_replaces_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    env_path = tmp_path / "env" / "ledger.json"
    monkeypatch.setenv("TOKEN_TRACKER_LEDGER", str(env_path))
    with TokenTracker() as t:
        assert t.persistence_path == env_path
        t.track_request("s", SONNET, 1, 1)
    assert _ledger_files_exist(env_path)
    assert _reopened_tokens(env_path) == 2
    assert not (home / ".multi-term").exists()


def test_explicit_argument_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("TOKEN_TRACKER_LEDGER", str(tmp_path / "env.json"))
    explicit = tmp_path / "explicit.json"
    with TokenTracker(persistence_path=str(explicit)) as t:
        t.track_request("s", SONNET, 1, 1)
    assert _ledger_files_exist(explicit)
    assert _reopened_tokens(explicit) == 2
    assert not list(tmp_path.glob("env.json*"))
    assert not (home / ".multi-term").exists()


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


# -- bad input --------------------------------------------------------------------------------

GOOD = {
    "session_id": "s",
    "model_name": SONNET,
    "input_tokens": 100,
    "output_tokens": 10,
    "cached_tokens": 0,
    "cache_creation_tokens": 0,
}

BAD_CALLS = [
    ("session_id", "", ValueError),
    ("session_id", None, TypeError),
    ("session_id", 5, TypeError),
    ("session_id", b"s", TypeError),
    ("session_id", "x" * 257, ValueError),
    ("session_id", "\udc80", ValueError),
    ("model_name", "", ValueError),
    ("model_name", None, TypeError),
    ("model_name", 3.5, TypeError),
    ("model_name", "m" * 257, ValueError),
]
for _field in ("input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens"):
    BAD_CALLS += [
        (_field, True, TypeError),
        (_field, False, TypeError),
        (_field, 1.0, TypeError),
        (_field, math.nan, TypeError),
        (_field, math.inf, TypeError),
        (_field, "10", TypeError),
        (_field, None, TypeError),
        (_field, -1, ValueError),
        (_field, 10**12 + 1, ValueError),
    ]


@pytest.mark.parametrize(("field", "value", "exc"), BAD_CALLS)
def test_bad_input_is_refused_and_records_nothing(
    ledger_path: Path, field: str, value: object, exc: type[Exception]
) -> None:
    with TokenTracker(ledger_path) as t:
        t.track_request("s", SONNET, 1000, 100, 10)
        t.track_request("other", OPUS, 5, 5)
        before = file_digests(ledger_path.parent)
        totals = t.get_global_usage()
        sessions = t.get_all_sessions()
        args = dict(GOOD, **{field: value})
        with pytest.raises(exc) as info:
            t.track_request(**args)  # type: ignore[arg-type]
        assert field in str(info.value)
        assert file_digests(ledger_path.parent) == before
        assert t.get_global_usage() == totals
        assert t.get_all_sessions() == sessions
    with TokenTracker(ledger_path) as t:
        assert t.get_global_usage() == totals


@pytest.mark.parametrize(
    ("cached", "created"),
    [(101, 0), (0, 101), (50, 51), (100, 1)],
)
def test_cached_plus_creation_above_input(ledger_path: Path, cached: int, created: int) -> None:
    with TokenTracker(ledger_path) as t:
        t.track_request("s", SONNET, 1, 1)
        before = file_digests(ledger_path.parent)
        with pytest.raises(ValueError, match="cached_tokens") as info:
            t.track_request("s", SONNET, 100, 0, cached, cache_creation_tokens=created)
        assert "input_tokens" in str(info.value)
        assert file_digests(ledger_path.parent) == before
        assert t.get_global_usage() == TokenUsage(1, 1)


def test_limits_are_inclusive(tracker: TokenTracker) -> None:
    tracker.track_request("x" * 256, SONNET, 10**12, 10**12, 10**12 - 5, cache_creation_tokens=5)
    tracker.track_request("zero", SONNET, 0, 0)
    s = tracker.get_session_usage("x" * 256)
    assert s is not None and s.total_usage.total_tokens == 2 * 10**12


ODD_IDS = [
    'he said "hi"',
    "back\\slash\\",
    "new\nline\r\n",
    "tab\tand\x00nul",
    "emoji 🎉🧪 ñ 中文",
    "\u2028\u2029",
    '{"json": [1, 2]}',
    "x" * 256,
    "🎉" * 256,
    " ",
    "\\u0041",
]


def test_odd_session_ids_round_trip(ledger_path: Path) -> None:
    with TokenTracker(ledger_path) as t:
        for n, sid in enumerate(ODD_IDS):
            t.track_request(sid, SONNET, n + 1, 1)
        t.track_request(ODD_IDS[0], SONNET, 1, 1)
    with TokenTracker(ledger_path) as t:
        sessions = t.get_all_sessions()
        assert set(sessions) == set(ODD_IDS)
        for n, sid in enumerate(ODD_IDS):
            s = t.get_session_usage(sid)
            assert s is not None and s.session_id == sid
            assert s.total_usage.input_tokens == n + 1 + (sid == ODD_IDS[0])
        t.compact()
    with TokenTracker(ledger_path) as t:
        assert set(t.get_all_sessions()) == set(ODD_IDS)
        assert set(t.export_usage_report()["sessions"]) == set(ODD_IDS)


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


# -- files --------------------------------------------------------------------------------------


def test_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "deeper" / "ledger.json"
        with TokenTracker(path, journal_max_bytes=2048) as t:
            for i in range(50):
                t.track_request(f"s{i}", SONNET, 1, 1)
            t.compact()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    created = [p for p in path.parent.iterdir() if p.is_file()]
    assert {p.name for p in created} >= {"ledger.json", "ledger.json.journal"}
    for p in created:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


@pytest.mark.parametrize("which", ["ledger.json", "ledger.json.journal", "ledger.json.lock"])
def test_symlink_at_ledger_paths_is_refused(tmp_path: Path, which: str) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    (directory / which).symlink_to(target)
    with pytest.raises(LedgerError, match="symlink"), TokenTracker(directory / "ledger.json") as t:
        t.track_request("s", SONNET, 1, 1)
    assert target.read_bytes() == b"precious"
    assert (directory / which).is_symlink()


def test_dangling_symlink_is_not_followed(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    target = tmp_path / "would-be-created"
    (directory / "ledger.json.journal").symlink_to(target)
    with pytest.raises(LedgerError), TokenTracker(directory / "ledger.json") as t:
        t.track_request("s", SONNET, 1, 1)
    assert not target.exists()
