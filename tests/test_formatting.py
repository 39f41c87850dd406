"""Status-bar and report text, byte for byte as the seed quick reference prints it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from token_tracker import (
    TokenTracker,
    TokenUsage,
    format_cost,
    format_tokens,
    format_usage_compact,
    format_usage_detailed,
)


@pytest.mark.parametrize(
    ("formatter", "expected"),
    [
        pytest.param(format_usage_compact, "2.3K tok (400 cached) $0.02", id="compact"),
        pytest.param(
            format_usage_detailed,
            "In: 1.5K tok, Out: 800 tok, Cost: $0.02 (400 cached)",
            id="detailed",
        ),
    ],
)
def test_seed_example(
    ledger_path: Path, formatter: Callable[[TokenUsage, str], str], expected: str
) -> None:
    """The seed quick reference's session-123 request, formatted both ways."""
    with TokenTracker(ledger_path) as tracker:
        tracker.track_request("session-123", "claude-sonnet-4.5", 1500, 800, 400)
        session = tracker.get_session_usage("session-123")
    assert session is not None
    text = formatter(session.total_usage, session.model_name)
    assert text == expected


def test_compact_without_cache() -> None:
    # opus: 700 * 0.015/1K + 500 * 0.075/1K = 0.0105 + 0.0375 = $0.048
    usage = TokenUsage(input_tokens=700, output_tokens=500)
    assert format_usage_compact(usage, "claude-opus-4.6") == "1.2K tok $0.05"
    assert (
        format_usage_detailed(usage, "claude-opus-4.6") == "In: 700 tok, Out: 500 tok, Cost: $0.05"
    )


def test_usage_without_recorded_cost_is_priced_by_model() -> None:
    usage = TokenUsage(input_tokens=1500, output_tokens=800, cached_tokens=400)
    assert usage.cost_usd is None
    assert format_usage_compact(usage, "claude-sonnet-4.5") == "2.3K tok (400 cached) $0.02"
    assert (
        format_usage_compact(usage, "claude-sonnet-4-5-20250929") == "2.3K tok (400 cached) $0.02"
    )


def test_recorded_cost_wins_over_model_price() -> None:
    usage = TokenUsage(input_tokens=1500, output_tokens=800, cached_tokens=400, cost_usd=1.234)
    assert format_usage_compact(usage, "claude-sonnet-4.5") == "2.3K tok (400 cached) $1.23"


def test_unknown_model_formats_as_zero() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=5)
    assert format_usage_compact(usage, "mystery-model") == "15 tok $0.00"


def test_large_cached_counts_use_units() -> None:
    usage = TokenUsage(
        input_tokens=2_000_000, output_tokens=500_000, cached_tokens=1_500_000, cost_usd=0
    )
    assert format_usage_compact(usage, "x") == "2.5M tok (1.5M cached) $0.00"
    assert (
        format_usage_detailed(usage, "x")
        == "In: 2.0M tok, Out: 500.0K tok, Cost: $0.00 (1.5M cached)"
    )


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"),
        (1, "1"),
        (999, "999"),
        (1000, "1.0K"),
        (1049, "1.0K"),
        (1050, "1.1K"),
        (1500, "1.5K"),
        (2300, "2.3K"),
        (999_949, "999.9K"),
        (999_950, "1.0M"),
        (999_999, "1.0M"),
        (1_000_000, "1.0M"),
        (1_500_000, "1.5M"),
        (999_949_999, "999.9M"),
        (999_950_000, "1.0B"),
        (1_000_000_000, "1.0B"),
        (2_500_000_000, "2.5B"),
        (10**12, "1000.0B"),
    ],
)
def test_format_tokens(count: int, text: str) -> None:
    assert format_tokens(count) == text


def test_format_tokens_never_prints_1000_of_a_smaller_unit() -> None:
    for count in list(range(999_000, 1_001_000, 7)) + list(range(999_000_000, 1_001_000_000, 7919)):
        out = format_tokens(count)
        assert not out.startswith("1000.0"), (count, out)
        assert out.endswith(("K", "M", "B"))


@pytest.mark.parametrize(
    ("cost", "text"),
    [
        (0, "$0.00"),
        (0.0, "$0.00"),
        (0.004, "$0.00"),
        (0.005, "$0.01"),
        (0.015, "$0.02"),
        (0.01542, "$0.02"),
        (0.069, "$0.07"),
        (0.09702, "$0.10"),
        (1.0, "$1.00"),
        (1.005, "$1.01"),
        (12.3, "$12.30"),
        (1234.567, "$1234.57"),
    ],
)
def test_format_cost(cost: float, text: str) -> None:
    assert format_cost(cost) == text
