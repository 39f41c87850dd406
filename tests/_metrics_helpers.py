"""Scraping TrackerMetrics in tests, and checking the scrape against the ledger."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from _models import HAIKU, SONNET
from _scrape import Values, parse_samples
from token_tracker import TokenTracker
from token_tracker.exporter import Exporter
from token_tracker.metrics import MetricsOptions
from token_tracker.pricing import NANO_PER_USD
from token_tracker.state import CACHED, COST, CREATED, IN, OUT, REQUESTS, SAVINGS, UNPRICED

#: family name -> (index into the state's totals, divisor from the stored unit)
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


def family(values: Values, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {lbl: v for (n, lbl), v in values.items() if n == name}


def session_ids(values: Values, name: str) -> set[str]:
    """The session_id labels of one family's series."""
    return {dict(lbl)["session_id"] for lbl in family(values, name)}


def totals(values: Values) -> Values:
    """Only the counters (``*_total`` samples)."""
    return {k: v for k, v in values.items() if k[0].endswith("_total")}


def fake_time(now: float) -> Any:
    """A stand-in for a module's ``time`` whose ``time()`` returns ``now``."""
    return types.SimpleNamespace(time=lambda: now)


class Scraper:
    """An Exporter's reader over a tracker, the way `serve` builds it."""

    def __init__(self, path: Path, options: MetricsOptions | None = None) -> None:
        self.tracker = TokenTracker(path)
        self.exporter = Exporter(self.tracker, options, otlp=False)

    def render(self) -> str:
        body, _ = self.exporter.render_metrics(None)
        return body.decode("utf-8")

    def scrape(self) -> Values:
        return parse_samples(self.render())

    def close(self) -> None:
        self.exporter.shutdown()
        self.tracker.close()


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
