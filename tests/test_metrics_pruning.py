"""TrackerMetrics per-session detail: TTL and max_sessions pruning, switching it off, options."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _metrics_helpers import (
    PER_MODEL,
    SESSION_FAMILIES,
    Scraper,
    assert_equals_ledger,
    fake_time,
    family,
    labels,
    record_some,
    session_ids,
)
from _models import HAIKU, SONNET
from _scrape import parse_samples
from token_tracker import TokenTracker
from token_tracker.metrics import MetricsOptions

MakeScraper = Callable[..., Scraper]


def test_idle_session_is_pruned_model_totals_unchanged(
    ledger_path: Path, make_scraper: MakeScraper, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_scraper(MetricsOptions(session_ttl=3600))
    s.tracker.track_request("idle", SONNET, 1000, 100, 200)
    s.tracker.track_request("idle", HAIKU, 50, 5)
    idle_at = time.time()
    before = s.scrape()
    assert any(("session_id", "idle") in lbl for (_, lbl) in before)
    # Two hours later the idle session has had no request; "busy" just did.
    later = idle_at + 7200
    monkeypatch.setattr("token_tracker.metrics.time", fake_time(later))
    monkeypatch.setattr("token_tracker.tracker.time", fake_time(later))
    s.tracker.track_request("busy", SONNET, 10, 1)
    after = s.scrape()
    for name in SESSION_FAMILIES:
        assert session_ids(after, name) == {"busy"}, name
    # Per-model totals keep every token and cent of the pruned session.
    assert after[("token_tracker_input_tokens_total", labels(model=SONNET))] == 1010
    assert after[("token_tracker_input_tokens_total", labels(model=HAIKU))] == 50
    for name in PER_MODEL:
        for lbl, value in family(before, name).items():
            assert family(after, name)[lbl] >= value
    assert_equals_ledger(after, ledger_path, sessions=False)
    # The sessions gauge counts the ledger, pruning only limits the detail.
    assert after[("token_tracker_sessions", frozenset())] == 2


def test_ttl_with_old_records(ledger_path: Path, make_scraper: MakeScraper) -> None:
    """A tiny TTL and real waiting-free timestamps: records older than the TTL vanish."""
    writer = TokenTracker(ledger_path)
    try:
        writer.track_request("old", SONNET, 10, 1)
    finally:
        writer.close()
    s = make_scraper(MetricsOptions(session_ttl=0.001))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # bounded: at most a few ms are needed
        values = s.scrape()
        if not family(values, "token_tracker_session_input_tokens_total"):
            break
        time.sleep(0.01)
    assert family(values, "token_tracker_session_input_tokens_total") == {}
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 10


def test_ttl_zero_keeps_every_session(
    make_scraper: MakeScraper, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_scraper(MetricsOptions(session_ttl=0))
    s.tracker.track_request("ancient", SONNET, 10, 1)
    monkeypatch.setattr("token_tracker.metrics.time", fake_time(time.time() + 10 * 365 * 86400))
    values = s.scrape()
    assert family(values, "token_tracker_session_input_tokens_total") == {
        labels(session_id="ancient", model=SONNET): 10
    }


def test_max_sessions_keeps_most_recent(
    make_scraper: MakeScraper, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_scraper(MetricsOptions(max_sessions=3))
    base = time.time()
    order = ["s0", "s1", "s2", "s3", "s4", "s5"]
    for n, sid in enumerate(order):
        monkeypatch.setattr("token_tracker.tracker.time", fake_time(base + n))
        s.tracker.track_request(sid, SONNET, 100, 10)
    # s0 gets a new request last: it is the most recent now.
    monkeypatch.setattr("token_tracker.tracker.time", fake_time(base + 10))
    s.tracker.track_request("s0", HAIKU, 1, 1)
    values = s.scrape()
    for name in SESSION_FAMILIES:
        assert session_ids(values, name) == {"s0", "s4", "s5"}, name
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 600
    assert values[("token_tracker_sessions", frozenset())] == 6


def test_max_sessions_zero_shows_none(make_scraper: MakeScraper) -> None:
    s = make_scraper(MetricsOptions(max_sessions=0))
    s.tracker.track_request("a", SONNET, 1, 1)
    values = s.scrape()
    for name in SESSION_FAMILIES:
        assert family(values, name) == {}, name
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 1


def test_no_session_metrics_removes_the_families(
    ledger_path: Path, make_scraper: MakeScraper
) -> None:
    s = make_scraper(MetricsOptions(session_metrics=False))
    record_some(s.tracker)
    text = s.render()
    assert "token_tracker_session_" not in text
    assert "session_id" not in text
    values = parse_samples(text)
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
