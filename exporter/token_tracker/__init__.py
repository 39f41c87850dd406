"""Track LLM token usage and cost per session and model.

``TokenTracker`` records requests in a crash-safe JSON ledger shared by
processes; the ``token-tracker`` command serves it as Prometheus/OTel metrics.
"""

from __future__ import annotations

from .errors import (
    ConfigError,
    LedgerCorruptError,
    LedgerError,
    TokenTrackerError,
    UnpricedModelError,
)
from .formatting import format_cost, format_tokens, format_usage_compact, format_usage_detailed
from .pricing import MODEL_PRICING, ModelPrice, PriceTable, canonical_model_id, load_pricing_file
from .tracker import TokenTracker, default_ledger_path
from .usage import ModelUsage, SessionTokenUsage, TokenUsage, TrackedRequest

__version__ = "0.1.0"

__all__ = [
    "MODEL_PRICING",
    "ConfigError",
    "LedgerCorruptError",
    "LedgerError",
    "ModelPrice",
    "ModelUsage",
    "PriceTable",
    "SessionTokenUsage",
    "TokenTracker",
    "TokenTrackerError",
    "TokenUsage",
    "TrackedRequest",
    "UnpricedModelError",
    "__version__",
    "canonical_model_id",
    "default_ledger_path",
    "format_cost",
    "format_tokens",
    "format_usage_compact",
    "format_usage_detailed",
    "load_pricing_file",
]
