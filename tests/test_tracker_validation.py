"""TokenTracker input validation: bad arguments are refused and record nothing; odd ids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from _models import OPUS, SONNET
from conftest import file_digests
from token_tracker import TokenTracker, TokenUsage

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
