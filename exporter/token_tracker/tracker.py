"""``TokenTracker``: record requests, price them, and read totals back."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import journal
from .errors import UnpricedModelError
from .ledger import DEFAULT_JOURNAL_MAX_BYTES, Ledger
from .pricing import NANO_PER_USD, ModelPrice, PriceTable, build_price_table
from .state import LedgerState, summary_of, usage_of
from .usage import (
    MAX_TOKEN_COUNT,
    SessionTokenUsage,
    TokenUsage,
    TrackedRequest,
    check_count,
    check_name,
)

if TYPE_CHECKING:
    from .exporter import ExporterHandle

log = logging.getLogger("token_tracker")

LEDGER_ENV = "TOKEN_TRACKER_LEDGER"
_QUOTE_CACHE_LIMIT = 100_000


def default_ledger_path() -> Path:
    """``$TOKEN_TRACKER_LEDGER``, else ``~/.multi-term/token_usage.json``."""
    env = os.environ.get(LEDGER_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".multi-term" / "token_usage.json"


class TokenTracker:
    """Records LLM requests per session and model in a shared, crash-safe ledger.

    Thread-safe, and safe to share one ledger between processes: every read
    first catches up with what other processes appended.
    """

    def __init__(
        self,
        persistence_path: str | os.PathLike[str] | None = None,
        *,
        pricing: str | os.PathLike[str] | Mapping[str, ModelPrice] | None = None,
        strict_pricing: bool = False,
        durability: str = "os",
        journal_max_bytes: int = DEFAULT_JOURNAL_MAX_BYTES,
    ) -> None:
        path = Path(persistence_path).expanduser() if persistence_path else default_ledger_path()
        self.persistence_path = path
        self.prices: PriceTable = build_price_table(pricing)
        self.strict_pricing = strict_pricing
        self._ledger = Ledger(
            path, self.prices, durability=durability, journal_max_bytes=journal_max_bytes
        )
        self._quoted: dict[str, str] = {}
        self._warned: set[str] = set()

    # -- recording ------------------------------------------------------------------

    def track_request(
        self,
        session_id: str,
        model_name: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        *,
        cache_creation_tokens: int = 0,
    ) -> TrackedRequest:
        """Record one request; it is in the ledger when this returns.

        ``cached_tokens`` and ``cache_creation_tokens`` are the parts of
        ``input_tokens`` read from and written to the prompt cache.
        """
        # One combined check keeps the common path cheap; _reject says what was wrong.
        if not (
            type(input_tokens) is int
            and type(output_tokens) is int
            and type(cached_tokens) is int
            and type(cache_creation_tokens) is int
            and 0 <= input_tokens <= MAX_TOKEN_COUNT
            and 0 <= output_tokens <= MAX_TOKEN_COUNT
            and cached_tokens >= 0
            and cache_creation_tokens >= 0
            and cached_tokens + cache_creation_tokens <= input_tokens
        ):
            _reject(input_tokens, output_tokens, cached_tokens, cache_creation_tokens)
        quoted = self._quoted
        session_q = quoted.get(session_id) if type(session_id) is str else None
        if session_q is None:
            session_q = self._quote(session_id, "session_id")
        model_q = quoted.get(model_name) if type(model_name) is str else None
        if model_q is None:
            model_q = self._quote(model_name, "model_name")

        price = self.prices.lookup(model_name)
        if price is None:
            cost = savings = 0
            self._unpriced(model_name)
        else:
            cost = price.cost_nanos(
                input_tokens, output_tokens, cached_tokens, cache_creation_tokens
            )
            savings = price.savings_nanos(cached_tokens)
        ts = time.time()
        counts = (input_tokens, output_tokens, cached_tokens, cache_creation_tokens)
        self._ledger.append(
            journal.request(ts, session_q, model_q, counts, cost, savings, price is None)
        )
        return TrackedRequest(
            session_id=session_id,
            model_name=model_name,
            usage=TokenUsage(*counts, cost / NANO_PER_USD),
            cost_usd=cost / NANO_PER_USD,
            cost_savings_from_cache=savings / NANO_PER_USD,
            timestamp=ts,
            unpriced=price is None,
        )

    def _quote(self, name: object, field: str) -> str:
        text = check_name(name, field)
        if len(self._quoted) >= _QUOTE_CACHE_LIMIT:
            self._quoted.clear()
        quoted = self._quoted[text] = journal.quote(text)
        return quoted

    def _unpriced(self, model_name: str) -> None:
        if self.strict_pricing:
            raise UnpricedModelError(model_name)
        if model_name not in self._warned:
            self._warned.add(model_name)
            log.warning(
                "model %r has no price: its tokens are recorded as unpriced and cost $0. "
                "Add it to a pricing file (TOKEN_TRACKER_PRICING).",
                model_name,
            )

    def reset_session_usage(self, session_id: str) -> bool:
        """Forget a session's totals; False when there was no such session.

        Per-model lifetime totals (the metrics' counters) keep the spend.
        """
        check_name(session_id, "session_id")
        with self._ledger.lock:
            self._ledger.catch_up()
            if session_id not in self._ledger.state.sessions:
                return False
        self._ledger.append(journal.reset(time.time(), session_id))
        self._ledger.catch_up()
        return True

    # -- reading ----------------------------------------------------------------------

    def get_session_usage(self, session_id: str) -> SessionTokenUsage | None:
        """A snapshot of one session, or None when it has recorded nothing."""
        with self._ledger.lock:
            self._ledger.catch_up()
            return self._ledger.state.session_usage(session_id)

    def get_all_sessions(self) -> dict[str, SessionTokenUsage]:
        """Snapshots of every session, by session id."""
        with self._ledger.lock:
            self._ledger.catch_up()
            return self._ledger.state.all_sessions()

    def get_global_usage(self) -> TokenUsage:
        """Totals across all current sessions."""
        with self._ledger.lock:
            self._ledger.catch_up()
            return usage_of(self._ledger.state.global_totals())

    def get_global_cost(self) -> float:
        """Total cost in USD across all current sessions."""
        cost = self.get_global_usage().cost_usd
        return cost if cost is not None else 0.0

    def export_usage_report(self) -> dict[str, Any]:
        """A JSON-serialisable report in the earlier tracker's shape."""
        with self._ledger.lock:
            self._ledger.catch_up()
            state = self._ledger.state
            sessions = state.all_sessions()
            totals = state.global_totals()
        return {
            "generated_at": time.time(),
            "global_summary": summary_of(totals, len(sessions)),
            "sessions": {sid: _session_report(s) for sid, s in sessions.items()},
            "model_pricing": self.prices.seed_shape(),
        }

    # -- internals for the metrics and the CLI -----------------------------------------

    def _read_state(self) -> tuple[LedgerState, Any]:
        """The caught-up state and the lock that guards it (hold it while reading)."""
        with self._ledger.lock:
            self._ledger.catch_up()
        return self._ledger.state, self._ledger.lock

    def compact(self) -> None:
        """Fold the journal into the snapshot now (it also happens as the journal grows)."""
        self._ledger.compact(wait=True)

    def start_exporter(self, **options: Any) -> ExporterHandle:
        """Serve /metrics and the status page from this process; see ``exporter``."""
        from .exporter import start_exporter

        return start_exporter(self, **options)

    def close(self) -> None:
        """Release the ledger's files."""
        self._ledger.close()

    def __enter__(self) -> TokenTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenTracker({str(self.persistence_path)!r})"


def _reject(i: object, o: object, c: object, w: object) -> None:
    check_count(i, "input_tokens")
    check_count(o, "output_tokens")
    check_count(c, "cached_tokens")
    check_count(w, "cache_creation_tokens")
    assert isinstance(i, int) and isinstance(c, int) and isinstance(w, int)
    raise ValueError(
        f"cached_tokens + cache_creation_tokens ({c} + {w}) must not exceed input_tokens ({i})"
    )


def _session_report(s: SessionTokenUsage) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "model_name": s.model_name,
        "total_usage": s.total_usage.to_dict(),
        "created_at": s.created_at,
        "last_updated": s.last_updated,
        "total_cost_usd": s.total_cost_usd,
        "request_count": s.request_count,
        "cache_hit_rate": s.cache_hit_rate,
        "cost_savings_from_cache": s.cost_savings_from_cache,
        "unpriced_tokens": s.unpriced_tokens,
        "unpriced_models": s.unpriced_models,
        "models": {
            m: {
                "total_usage": mu.usage.to_dict(),
                "total_cost_usd": mu.cost_usd,
                "request_count": mu.request_count,
                "cost_savings_from_cache": mu.cost_savings_from_cache,
                "unpriced_tokens": mu.unpriced_tokens,
            }
            for m, mu in s.models.items()
        },
    }
