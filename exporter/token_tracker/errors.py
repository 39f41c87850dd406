"""The exception hierarchy for ledger and configuration failures.

API misuse (a bad argument) raises plain ``ValueError``/``TypeError``; everything
here derives from :class:`TokenTrackerError` so callers can catch one type.
"""

from __future__ import annotations


class TokenTrackerError(Exception):
    """Base class for ledger and configuration failures."""


class ConfigError(TokenTrackerError):
    """A configuration or pricing file, flag or environment variable is invalid."""


class LedgerError(TokenTrackerError):
    """The ledger cannot be read or written."""


class LedgerCorruptError(LedgerError):
    """A ledger file is damaged; it was preserved and nothing was overwritten."""

    def __init__(self, message: str, *, path: str, preserved_as: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.preserved_as = preserved_as


class UnpricedModelError(TokenTrackerError, ValueError):
    """A model has no price and the tracker was created with ``strict_pricing=True``."""

    def __init__(self, model_name: str) -> None:
        super().__init__(
            f"model_name {model_name!r} has no price; add it to a pricing file "
            "(TOKEN_TRACKER_PRICING) or use strict_pricing=False"
        )
        self.model_name = model_name
