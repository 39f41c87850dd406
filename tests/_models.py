"""Model names the tests record requests for (all in the built-in price table)."""

from __future__ import annotations

SONNET = "claude-sonnet-4.5"
OPUS = "claude-opus-4.6"
HAIKU = "claude-haiku-4.5"
