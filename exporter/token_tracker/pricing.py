"""Model prices, model-id aliases and pricing files.

Costs are computed in exact integers. A price is held in femto-dollars per token
(1e-15 USD) and a request's cost is rounded once, half up, to a whole
nano-dollar (1e-9 USD), which is what the ledger stores. Nano-dollars convert to
float exactly up to 9 million dollars, so sums never drift.

Alias rule (how an API model id finds its price), applied to both the id and the
table's keys:

1. lower-case and strip whitespace;
2. drop a provider prefix up to the last ``/`` (``anthropic/claude-...``) or a
   leading ``anthropic.`` (Bedrock);
3. drop a trailing release date ``-YYYYMMDD`` or ``@YYYYMMDD``, then a trailing
   ``-vN[:N]`` (Bedrock version) and ``-latest``;
4. write version dots as dashes (``4.5`` -> ``4-5``).

So ``claude-sonnet-4-5-20250929`` and ``claude-sonnet-4.5`` share a price.

Pricing file schema (TOML or JSON, chosen by extension)::

    unit = "per_1k_tokens"          # or "per_token", "per_1m_tokens"; default per_1k_tokens
    [models."claude-sonnet-4.5"]
    input = 0.003                   # required
    output = 0.015                  # required
    cache_read = 0.0003             # optional, default 10% of input
    cache_write = 0.00375           # optional, default 125% of input
    unit = "per_1k_tokens"          # optional, overrides the top-level unit

Entries override the built-in table by alias key and add new models.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

#: The earlier tracker's table, in its shape: USD per 1,000 tokens.
MODEL_PRICING: dict[str, dict[str, float]] = {
    "claude-opus-4.6": {"input": 0.015, "output": 0.075},
    "claude-sonnet-4.5": {"input": 0.003, "output": 0.015},
    "claude-haiku-4.5": {"input": 0.001, "output": 0.005},
}

PRICING_ENV = "TOKEN_TRACKER_PRICING"
FEMTO_PER_USD = 10**15
NANO_PER_USD = 10**9
_FEMTO_PER_NANO = 10**6
CACHE_READ_FACTOR = Decimal("0.1")
CACHE_WRITE_FACTOR = Decimal("1.25")

_UNITS = {
    "per_token": Decimal(1),
    "per_1k_tokens": Decimal(1000),
    "per_1m_tokens": Decimal(1_000_000),
}
_PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "unit")

_PREFIX_RE = re.compile(r"^(?:.*/|anthropic\.)")
_DATE_RE = re.compile(r"[-@]\d{8}$")
_VERSION_RE = re.compile(r"-v\d+(?::\d+)?$")
_DOT_RE = re.compile(r"(?<=\d)\.(?=\d)")


def canonical_model_id(model_name: str) -> str:
    """The alias key a model id is priced by (see the module docstring)."""
    key = _PREFIX_RE.sub("", model_name.strip().lower())
    key = _VERSION_RE.sub("", key)
    key = _DATE_RE.sub("", key)
    key = _VERSION_RE.sub("", key)
    key = key.removesuffix("-latest")
    return _DOT_RE.sub("-", key)


@dataclass(frozen=True)
class ModelPrice:
    """Per-token prices of one model, in femto-dollars (exact integers)."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    def cost_nanos(self, input_tokens: int, output_tokens: int, cached: int, created: int) -> int:
        """Cost of one request in nano-dollars, rounded half up."""
        femto = (
            (input_tokens - cached - created) * self.input
            + cached * self.cache_read
            + created * self.cache_write
            + output_tokens * self.output
        )
        return (femto + _FEMTO_PER_NANO // 2) // _FEMTO_PER_NANO

    def savings_nanos(self, cached: int) -> int:
        """What cached input saved against full input price, in nano-dollars."""
        femto = cached * (self.input - self.cache_read)
        return (femto + _FEMTO_PER_NANO // 2) // _FEMTO_PER_NANO

    def per_token_usd(self) -> dict[str, float]:
        """Prices in USD per token by kind, as exported in metrics."""
        return {
            "input": self.input / FEMTO_PER_USD,
            "output": self.output / FEMTO_PER_USD,
            "cached": self.cache_read / FEMTO_PER_USD,
            "cache_creation": self.cache_write / FEMTO_PER_USD,
        }


def _to_femto(value: object, unit: Decimal, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        # str() of a float is its shortest repr, so 0.003 stays exactly 0.003.
        price = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ConfigError(f"{where}: price must be a finite number >= 0, got {value!r}")
    femto = price * FEMTO_PER_USD / unit
    if femto != femto.to_integral_value():
        raise ConfigError(f"{where}: price {value!r} is finer than 1e-15 USD per token")
    return int(femto)


def _price_from_entry(entry: Mapping[str, Any], default_unit: str, where: str) -> ModelPrice:
    for key in entry:
        if key not in _PRICE_KEYS:
            raise ConfigError(f"{where}: unknown field {key!r} (expected one of {_PRICE_KEYS})")
    unit_name = entry.get("unit", default_unit)
    if unit_name not in _UNITS:
        raise ConfigError(f"{where}.unit: {unit_name!r} is not one of {sorted(_UNITS)}")
    unit = _UNITS[unit_name]
    for required in ("input", "output"):
        if required not in entry:
            raise ConfigError(f"{where}: missing required field {required!r}")
    input_femto = _to_femto(entry["input"], unit, f"{where}.input")
    output_femto = _to_femto(entry["output"], unit, f"{where}.output")
    if "cache_read" in entry:
        read = _to_femto(entry["cache_read"], unit, f"{where}.cache_read")
    else:
        read = int(input_femto * CACHE_READ_FACTOR)
    if "cache_write" in entry:
        write = _to_femto(entry["cache_write"], unit, f"{where}.cache_write")
    else:
        write = int(input_femto * CACHE_WRITE_FACTOR)
    return ModelPrice(input_femto, output_femto, read, write)


class PriceTable:
    """Prices by model, resolved through the alias rule. Immutable once built."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._names = dict(prices)
        self._by_key = {canonical_model_id(name): price for name, price in prices.items()}
        self._cache: dict[str, ModelPrice | None] = {}

    @classmethod
    def from_seed_table(cls, table: Mapping[str, Mapping[str, float]]) -> PriceTable:
        """Build from the earlier tracker's shape: ``{model: {input, output}}`` per 1K."""
        return cls(
            {
                name: _price_from_entry(entry, "per_1k_tokens", f"MODEL_PRICING[{name!r}]")
                for name, entry in table.items()
            }
        )

    def lookup(self, model_name: str) -> ModelPrice | None:
        """The price of a model id, or None when it has none."""
        try:
            return self._cache[model_name]
        except KeyError:
            price = self._by_key.get(canonical_model_id(model_name))
            if len(self._cache) < 10_000:
                self._cache[model_name] = price
            return price

    def merged(self, overrides: Mapping[str, ModelPrice]) -> PriceTable:
        """A new table with ``overrides`` replacing entries that share an alias key."""
        keys = {canonical_model_id(name) for name in overrides}
        names = {n: p for n, p in self._names.items() if canonical_model_id(n) not in keys}
        names.update(overrides)
        return PriceTable(names)

    def items(self) -> list[tuple[str, ModelPrice]]:
        """The table's entries under their configured names."""
        return list(self._names.items())

    def seed_shape(self) -> dict[str, dict[str, float]]:
        """The table in the earlier tracker's report shape (USD per 1K tokens)."""
        return {
            name: {
                "input": float(Decimal(p.input) * 1000 / FEMTO_PER_USD),
                "output": float(Decimal(p.output) * 1000 / FEMTO_PER_USD),
                "cache_read": float(Decimal(p.cache_read) * 1000 / FEMTO_PER_USD),
                "cache_write": float(Decimal(p.cache_write) * 1000 / FEMTO_PER_USD),
            }
            for name, p in self._names.items()
        }


def parse_pricing(data: object, source: str) -> dict[str, ModelPrice]:
    """Validate a decoded pricing document; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table at the top level")
    for key in data:
        if key not in ("unit", "models"):
            raise ConfigError(f"{source}: unknown field {key!r} (expected 'unit', 'models')")
    default_unit = data.get("unit", "per_1k_tokens")
    if default_unit not in _UNITS:
        raise ConfigError(f"{source}: unit {default_unit!r} is not one of {sorted(_UNITS)}")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{source}: 'models' must be a table of model -> prices")
    prices: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        where = f"{source}: models.{name!r}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table of prices")
        prices[name] = _price_from_entry(entry, default_unit, where)
    return prices


def load_pricing_file(path: str | os.PathLike[str]) -> dict[str, ModelPrice]:
    """Read a TOML (``.toml``) or JSON pricing file."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"pricing file {file}: {exc.strerror or exc}") from None
    try:
        if file.suffix.lower() == ".toml":
            data: object = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if file.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"pricing file {file}: not valid {kind}: {exc}") from None
    return parse_pricing(data, f"pricing file {file}")


def build_price_table(
    pricing: str | os.PathLike[str] | Mapping[str, ModelPrice] | None = None,
    base: Mapping[str, Mapping[str, float]] = MODEL_PRICING,
) -> PriceTable:
    """The seed table, overridden by ``pricing`` or by the file in ``$TOKEN_TRACKER_PRICING``."""
    table = PriceTable.from_seed_table(base)
    if pricing is None:
        env = os.environ.get(PRICING_ENV)
        pricing = env if env else None
    if pricing is None:
        return table
    if isinstance(pricing, Mapping):
        return table.merged(pricing)
    return table.merged(load_pricing_file(pricing))
