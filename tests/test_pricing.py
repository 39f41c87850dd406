"""Prices: the seed table, the alias rule, exact integer costs and pricing files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from token_tracker import MODEL_PRICING, ConfigError, TokenTracker
from token_tracker.pricing import (
    FEMTO_PER_USD,
    ModelPrice,
    PriceTable,
    build_price_table,
    canonical_model_id,
    load_pricing_file,
)

SEED = PriceTable.from_seed_table(MODEL_PRICING)


def test_seed_table_values_and_shape() -> None:
    assert MODEL_PRICING == {
        "claude-opus-4.6": {"input": 0.015, "output": 0.075},
        "claude-sonnet-4.5": {"input": 0.003, "output": 0.015},
        "claude-haiku-4.5": {"input": 0.001, "output": 0.005},
    }


@pytest.mark.parametrize(
    ("model", "per_1k_in", "per_1k_out"),
    [
        ("claude-opus-4.6", "0.015", "0.075"),
        ("claude-sonnet-4.5", "0.003", "0.015"),
        ("claude-haiku-4.5", "0.001", "0.005"),
    ],
)
def test_seed_prices_are_exact_integers(model: str, per_1k_in: str, per_1k_out: str) -> None:
    from decimal import Decimal

    price = SEED.lookup(model)
    assert price is not None
    assert price.input == int(Decimal(per_1k_in) * FEMTO_PER_USD / 1000)
    assert price.output == int(Decimal(per_1k_out) * FEMTO_PER_USD / 1000)
    # cached input at 10% of input, cache creation at 1.25x input
    assert price.cache_read * 10 == price.input
    assert price.cache_write * 4 == price.input * 5


@pytest.mark.parametrize(
    "alias",
    [
        "claude-sonnet-4.5",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-sonnet-4-5-20250929",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "Claude-Sonnet-4.5",
        " claude-sonnet-4-5 ",
        "claude-sonnet-4-5@20250929",
        "claude-sonnet-4-5-latest",
    ],
)
def test_sonnet_aliases_share_the_seed_price(alias: str) -> None:
    assert SEED.lookup(alias) == SEED.lookup("claude-sonnet-4.5")
    assert canonical_model_id(alias) == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("alias", "seed"),
    [
        ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
        ("claude-haiku-4-5", "claude-haiku-4.5"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4.5"),
        ("claude-opus-4-6", "claude-opus-4.6"),
        ("anthropic/claude-opus-4-6", "claude-opus-4.6"),
    ],
)
def test_other_aliases(alias: str, seed: str) -> None:
    assert SEED.lookup(alias) is not None
    assert SEED.lookup(alias) == SEED.lookup(seed)


def test_alias_rule_is_not_a_date_list() -> None:
    # Any release date works, not only known ones.
    assert SEED.lookup("claude-sonnet-4-5-20991231") == SEED.lookup("claude-sonnet-4.5")


@pytest.mark.parametrize("name", ["claude-sonnet-4", "gpt-4o", "claude-sonnet-4-6", "sonnet"])
def test_unrelated_models_are_not_priced(name: str) -> None:
    assert SEED.lookup(name) is None


def test_exact_cost_sonnet_seed_example() -> None:
    price = SEED.lookup("claude-sonnet-4.5")
    assert price is not None
    # 1100 * 3e-6 + 400 * 0.3e-6 + 800 * 15e-6 = 0.0033 + 0.00012 + 0.012
    assert price.cost_nanos(1500, 800, 400, 0) == 15_420_000


def test_exact_cost_through_the_tracker(ledger_path: Path) -> None:
    with TokenTracker(ledger_path) as tracker:
        req = tracker.track_request("s", "claude-sonnet-4-5-20250929", 1500, 800, 400)
        assert req.cost_usd == 0.01542
        assert req.usage.cost_usd == 0.01542


def test_cache_creation_priced_at_125_percent() -> None:
    price = SEED.lookup("claude-sonnet-4.5")
    assert price is not None
    # 1000 created tokens at 3.75e-6 = 0.00375 USD
    assert price.cost_nanos(1000, 0, 0, 1000) == 3_750_000
    assert price.cost_nanos(1000, 0, 0, 0) == 3_000_000
    # cached: 1000 at 0.3e-6
    assert price.cost_nanos(1000, 0, 1000, 0) == 300_000
    assert price.savings_nanos(1000) == 2_700_000


def test_opus_seed_ledger_cost() -> None:
    price = SEED.lookup("claude-opus-4.6")
    assert price is not None
    # review-7 in the seed ledger: 3000 in (1000 cached), 500 out = $0.069
    assert price.cost_nanos(3000, 500, 1000, 0) == 2000 * 15_000 + 1000 * 1_500 + 500 * 75_000
    assert price.cost_nanos(3000, 500, 1000, 0) == 69_000_000


def test_rounding_is_half_up_to_a_nanodollar() -> None:
    price = ModelPrice(input=500_000, output=0, cache_read=0, cache_write=0)  # 0.5 nano/token
    assert price.cost_nanos(1, 0, 0, 0) == 1
    assert price.cost_nanos(3, 0, 0, 0) == 2  # 1.5 -> 2
    price = ModelPrice(input=400_000, output=0, cache_read=0, cache_write=0)
    assert price.cost_nanos(1, 0, 0, 0) == 0


def test_large_sums_do_not_drift(ledger_path: Path) -> None:
    with TokenTracker(ledger_path) as tracker:
        for _ in range(1000):
            tracker.track_request("s", "claude-haiku-4.5", 1, 1)
        # 1000 * (1e-6 + 5e-6) = 0.006 exactly
        assert tracker.get_global_cost() == 0.006


# -- pricing files -----------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_pricing_file_per_1k(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "prices.toml",
        """
unit = "per_1k_tokens"
[models."claude-sonnet-4.5"]
input = 0.004
output = 0.02
[models."my-model"]
input = 0.002
output = 0.004
cache_read = 0.0001
cache_write = 0.003
""",
    )
    table = build_price_table(f)
    sonnet = table.lookup("claude-sonnet-4-5-20250929")
    assert sonnet == ModelPrice(4_000_000_000, 20_000_000_000, 400_000_000, 5_000_000_000)
    mine = table.lookup("my-model")
    assert mine == ModelPrice(2_000_000_000, 4_000_000_000, 100_000_000, 3_000_000_000)
    # untouched seed entries stay
    assert table.lookup("claude-opus-4.6") == SEED.lookup("claude-opus-4.6")


def test_json_pricing_file_per_token_and_per_1m(tmp_path: Path) -> None:
    doc = {
        "unit": "per_1m_tokens",
        "models": {
            "claude-haiku-4.5": {"input": 2, "output": 8, "cache_read": 0.2, "cache_write": 2.5},
            "tiny": {"input": "0.000001", "output": 0.000002, "unit": "per_token"},
        },
    }
    f = _write(tmp_path / "prices.json", json.dumps(doc))
    table = build_price_table(f)
    assert table.lookup("claude-haiku-4-5-20251001") == ModelPrice(
        2_000_000_000, 8_000_000_000, 200_000_000, 2_500_000_000
    )
    assert table.lookup("tiny") == ModelPrice(
        1_000_000_000, 2_000_000_000, 100_000_000, 1_250_000_000
    )


def test_units_agree(tmp_path: Path) -> None:
    a = load_pricing_file(
        _write(
            tmp_path / "a.json",
            '{"unit":"per_token","models":{"m":{"input":0.000003,"output":0.000015}}}',
        )
    )
    b = load_pricing_file(
        _write(tmp_path / "b.toml", 'unit="per_1k_tokens"\n[models.m]\ninput=0.003\noutput=0.015\n')
    )
    c = load_pricing_file(
        _write(tmp_path / "c.toml", 'unit="per_1m_tokens"\n[models.m]\ninput=3\noutput=15\n')
    )
    assert a == b == c
    assert a["m"] == SEED.lookup("claude-sonnet-4.5")


def test_default_unit_is_per_1k(tmp_path: Path) -> None:
    prices = load_pricing_file(
        _write(tmp_path / "p.toml", "[models.m]\ninput=0.003\noutput=0.015\n")
    )
    assert prices["m"] == SEED.lookup("claude-sonnet-4.5")


def test_override_by_alias_key(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.toml", '[models."claude-sonnet-4-5-20250929"]\ninput=1\noutput=1\n')
    table = build_price_table(f)
    assert table.lookup("claude-sonnet-4.5") == ModelPrice(10**12, 10**12, 10**11, 125 * 10**10)
    names = [name for name, _ in table.items()]
    assert "claude-sonnet-4.5" not in names  # replaced, not duplicated


def test_pricing_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_path: Path
) -> None:
    f = _write(tmp_path / "p.toml", '[models."new-model"]\ninput=0.01\noutput=0.02\n')
    monkeypatch.setenv("TOKEN_TRACKER_PRICING", str(f))
    with TokenTracker(ledger_path) as tracker:
        req = tracker.track_request("s", "new-model", 1000, 1000)
        assert not req.unpriced
        assert req.cost_usd == 0.03
        # a seed model keeps its seed price
        assert tracker.track_request("s", "claude-sonnet-4.5", 1500, 800, 400).cost_usd == 0.01542


def test_pricing_argument_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_path: Path
) -> None:
    env_file = _write(tmp_path / "env.toml", '[models."m"]\ninput=0.01\noutput=0.01\n')
    arg_file = _write(tmp_path / "arg.toml", '[models."m"]\ninput=0.02\noutput=0.02\n')
    monkeypatch.setenv("TOKEN_TRACKER_PRICING", str(env_file))
    with TokenTracker(ledger_path, pricing=arg_file) as tracker:
        assert tracker.track_request("s", "m", 1000, 0).cost_usd == 0.02


def test_override_of_seed_model_through_tracker(tmp_path: Path, ledger_path: Path) -> None:
    f = _write(tmp_path / "p.json", '{"models":{"claude-opus-4.6":{"input":0.01,"output":0.05}}}')
    with TokenTracker(ledger_path, pricing=f) as tracker:
        assert tracker.track_request("s", "claude-opus-4-6", 1000, 1000).cost_usd == 0.06
        report = tracker.export_usage_report()
        assert report["model_pricing"]["claude-opus-4.6"]["input"] == 0.01
        assert report["model_pricing"]["claude-opus-4.6"]["output"] == 0.05


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("bad.toml", "[models.m]\ninput = 0.1\n", "output"),
        ("bad.toml", '[models.m]\ninput = "abc"\noutput = 1\n', "input"),
        ("bad.toml", "[models.m]\ninput = -1\noutput = 1\n", "input"),
        ("bad.toml", "[models.m]\ninput = 1\noutput = 1\ncache_read = true\n", "cache_read"),
        ("bad.toml", "[models.m]\ninput = 1\noutput = 1\ncache_write = 'nan'\n", "cache_write"),
        ("bad.toml", "[models.m]\ninput = 1\noutput = 1\nbogus = 1\n", "bogus"),
        ("bad.toml", "[models.m]\ninput = 1\noutput = 1\nunit = 'per_day'\n", "unit"),
        ("bad.toml", "unit = 'per_2k'\n[models.m]\ninput = 1\noutput = 1\n", "unit"),
        ("bad.toml", "colour = 1\n", "colour"),
        ("bad.toml", "models = 3\n", "models"),
        ("bad.toml", "[models]\nm = 3\n", "m"),
        ("bad.toml", "[models.m\ninput = 1\n", "toml"),
        ("bad.json", '{"models": {"m": {"input": 1,}}}', "json"),
        ("bad.json", "[1, 2]", "top level"),
        ("bad.json", '{"models": {"m": {"input": 1e-20, "output": 1}}}', "input"),
    ],
)
def test_bad_pricing_files_name_file_and_field(
    tmp_path: Path, name: str, text: str, field: str
) -> None:
    f = _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_pricing_file(f)
    message = str(info.value)
    assert str(f) in message
    assert field.lower() in message.lower()


def test_missing_pricing_file(tmp_path: Path, ledger_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        TokenTracker(ledger_path, pricing=missing)
    assert not ledger_path.exists()


def test_bad_env_pricing_file_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_path: Path
) -> None:
    f = _write(tmp_path / "p.toml", "[models.m]\ninput = 1\n")
    monkeypatch.setenv("TOKEN_TRACKER_PRICING", str(f))
    with pytest.raises(ConfigError, match="output"):
        TokenTracker(ledger_path)
