"""Text for status bars and reports, byte for byte as the earlier tracker printed it."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from .pricing import NANO_PER_USD, PriceTable, build_price_table
from .usage import TokenUsage

_UNITS = ((10**9, "B"), (10**6, "M"), (10**3, "K"))
_CENT = Decimal("0.01")


def format_tokens(count: int) -> str:
    """``999`` -> ``"999"``, ``1500`` -> ``"1.5K"``, ``999_950`` -> ``"1.0M"``."""
    if count < 1000:
        return str(count)
    for i, (scale, suffix) in enumerate(_UNITS):
        if count >= scale or i == len(_UNITS) - 1:
            value = Decimal(count) / scale
            rounded = value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            # Rounding can reach the next unit (999,950 -> "1000.0K"); promote instead.
            if rounded >= 1000 and i > 0:
                bigger_scale, bigger_suffix = _UNITS[i - 1]
                value = Decimal(count) / bigger_scale
                rounded = value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
                return f"{rounded}{bigger_suffix}"
            return f"{rounded}{suffix}"
    raise AssertionError("unreachable")


def format_cost(cost_usd: float) -> str:
    """``0.01542`` -> ``"$0.02"``: dollars, two decimals, half up."""
    # repr() gives the shortest decimal of the float, so 0.015 rounds to 0.02 as written.
    return f"${Decimal(repr(float(cost_usd))).quantize(_CENT, rounding=ROUND_HALF_UP)}"


def _cost_of(usage: TokenUsage, model_name: str, prices: PriceTable | None) -> float:
    if usage.cost_usd is not None:
        return usage.cost_usd
    price = (prices or build_price_table()).lookup(model_name)
    if price is None:
        return 0.0
    nanos = price.cost_nanos(
        usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cache_creation_tokens
    )
    return nanos / NANO_PER_USD


def format_usage_compact(
    usage: TokenUsage, model_name: str, *, prices: PriceTable | None = None
) -> str:
    """``"2.3K tok (400 cached) $0.02"``; without cache ``"1.2K tok $0.05"``.

    The cost is the usage's recorded cost when it has one, else priced at ``model_name``.
    """
    cost = format_cost(_cost_of(usage, model_name, prices))
    text = f"{format_tokens(usage.total_tokens)} tok"
    if usage.cached_tokens:
        text += f" ({format_tokens(usage.cached_tokens)} cached)"
    return f"{text} {cost}"


def format_usage_detailed(
    usage: TokenUsage, model_name: str, *, prices: PriceTable | None = None
) -> str:
    """``"In: 1.5K tok, Out: 800 tok, Cost: $0.02 (400 cached)"``."""
    cost = format_cost(_cost_of(usage, model_name, prices))
    text = (
        f"In: {format_tokens(usage.input_tokens)} tok, "
        f"Out: {format_tokens(usage.output_tokens)} tok, Cost: {cost}"
    )
    if usage.cached_tokens:
        text += f" ({format_tokens(usage.cached_tokens)} cached)"
    return text
