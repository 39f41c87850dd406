"""Usage values handed to callers, and validation of caller input."""

from __future__ import annotations

import math

import pytest

from token_tracker import SessionTokenUsage, TokenUsage
from token_tracker.usage import MAX_TOKEN_COUNT, ModelUsage, check_count, check_name


def test_total_tokens_is_input_plus_output() -> None:
    usage = TokenUsage(input_tokens=1500, output_tokens=800, cached_tokens=400)
    assert usage.total_tokens == 2300
    usage.output_tokens = 1
    assert usage.total_tokens == 1501


def test_add_sums_counts_and_costs() -> None:
    a = TokenUsage(1, 2, 3, 4, 0.5)
    b = TokenUsage(10, 20, 30, 40, 0.25)
    assert a + b == TokenUsage(11, 22, 33, 44)
    assert (a + b).cost_usd == 0.75
    assert (TokenUsage(1, 1) + TokenUsage(1, 1)).cost_usd is None
    assert (TokenUsage(1, 1, cost_usd=0.1) + TokenUsage(1, 1)).cost_usd == 0.1


def test_to_dict_has_the_earlier_keys() -> None:
    assert TokenUsage(1500, 800, 400).to_dict() == {
        "input_tokens": 1500,
        "output_tokens": 800,
        "cached_tokens": 400,
        "cache_creation_tokens": 0,
        "total_tokens": 2300,
    }


def _session(input_tokens: int, cached: int) -> SessionTokenUsage:
    usage = TokenUsage(input_tokens, 10, cached, 0, 0.0)
    return SessionTokenUsage(
        session_id="s",
        model_name="m",
        total_usage=usage,
        total_cost_usd=0.0,
        request_count=1,
        created_at=1.0,
        last_updated=1.0,
        cost_savings_from_cache=0.0,
        unpriced_tokens=0,
        models={"m": ModelUsage("m", usage, 0.0, 1, 0.0)},
    )


def test_cache_hit_rate() -> None:
    assert _session(1000, 250).cache_hit_rate == 0.25
    assert _session(0, 0).cache_hit_rate == 0.0
    assert _session(1000, 1000).cache_hit_rate == 1.0


@pytest.mark.parametrize("value", ["s", "x" * 256, "a\nb", 'q"\\', "emoji 🎉", " "])
def test_check_name_accepts(value: str) -> None:
    assert check_name(value, "session_id") == value


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        ("", ValueError),
        ("x" * 257, ValueError),
        (None, TypeError),
        (1, TypeError),
        (b"s", TypeError),
        ("\ud800", ValueError),
    ],
)
def test_check_name_rejects_naming_the_field(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="model_name"):
        check_name(value, "model_name")


@pytest.mark.parametrize("value", [0, 1, MAX_TOKEN_COUNT])
def test_check_count_accepts(value: int) -> None:
    assert check_count(value, "input_tokens") == value


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (True, TypeError),
        (False, TypeError),
        (1.0, TypeError),
        (math.nan, TypeError),
        ("1", TypeError),
        (None, TypeError),
        (-1, ValueError),
        (MAX_TOKEN_COUNT + 1, ValueError),
    ],
)
def test_check_count_rejects_naming_the_field(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="output_tokens"):
        check_count(value, "output_tokens")
