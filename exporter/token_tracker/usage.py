"""Usage values handed to callers, and validation of what callers hand in.

Every object here is a snapshot: a fresh copy built for the caller, so mutating
it, or later requests arriving, never changes the tracker or another snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_SESSION_ID_LENGTH = 256
MAX_TOKEN_COUNT = 10**12


@dataclass
class TokenUsage:
    """Token counts, with the recorded cost when it is known."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    #: Recorded cost in USD (the sum of the requests' fixed costs), or None.
    cost_usd: float | None = field(default=None, compare=False)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cached tokens are part of input)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        cost = None
        if self.cost_usd is not None or other.cost_usd is not None:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
            cost,
        )

    def to_dict(self) -> dict[str, int]:
        """The earlier tracker's JSON shape (plus cache-creation tokens)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class ModelUsage:
    """One model's share of a session."""

    model_name: str
    usage: TokenUsage
    cost_usd: float
    request_count: int
    cost_savings_from_cache: float
    #: Tokens recorded while the model had no price (their cost counts as 0).
    unpriced_tokens: int = 0


@dataclass
class SessionTokenUsage:
    """A session's totals across its models."""

    session_id: str
    #: The model of the session's latest request.
    model_name: str
    total_usage: TokenUsage
    total_cost_usd: float
    request_count: int
    created_at: float
    last_updated: float
    cost_savings_from_cache: float
    unpriced_tokens: int
    models: dict[str, ModelUsage]

    @property
    def cache_hit_rate(self) -> float:
        """Share of input tokens served from cache, 0.0 to 1.0."""
        usage = self.total_usage
        return usage.cached_tokens / usage.input_tokens if usage.input_tokens else 0.0

    @property
    def unpriced_models(self) -> list[str]:
        """Models in this session that had no price."""
        return sorted(m for m, mu in self.models.items() if mu.unpriced_tokens)


@dataclass(frozen=True)
class TrackedRequest:
    """What ``track_request`` recorded: the usage and its fixed cost."""

    session_id: str
    model_name: str
    usage: TokenUsage
    cost_usd: float
    cost_savings_from_cache: float
    timestamp: float
    #: True when the model had no price; the cost then counts as 0.
    unpriced: bool


def check_name(value: object, name: str) -> str:
    """Validate a session id or model name; raise naming ``name``."""
    if type(value) is not str:
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > MAX_SESSION_ID_LENGTH:
        raise ValueError(f"{name} is {len(value)} characters; the limit is {MAX_SESSION_ID_LENGTH}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{name} contains a lone surrogate and cannot be stored") from None
    return value


def check_count(value: object, name: str) -> int:
    """Validate a token count; raise naming ``name``."""
    # type() rather than isinstance(): bool is an int subclass and must be refused.
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0 or value > MAX_TOKEN_COUNT:
        raise ValueError(f"{name} must be between 0 and {MAX_TOKEN_COUNT}, got {value}")
    return value
