"""OpenTelemetry instruments over a tracker's ledger.

Every counter is an asynchronous (observable) instrument whose callback reports
the ledger's cumulative totals, so values equal the ledger: every process's
requests are in them, and they continue from the persisted totals after a
restart instead of starting at zero.

Metric names (Prometheus exposition adds ``_total`` to counters):

Per model, all sessions, never pruned (label ``model``):
  ``token_tracker_input_tokens_total``, ``token_tracker_output_tokens_total``,
  ``token_tracker_cached_tokens_total``, ``token_tracker_cache_creation_tokens_total``,
  ``token_tracker_cost_usd_total``, ``token_tracker_requests_total``,
  ``token_tracker_cache_savings_usd_total``, ``token_tracker_unpriced_tokens_total``.
Per session and model (labels ``session_id``, ``model``; limited by TTL and count):
  ``token_tracker_session_input_tokens_total``, ``token_tracker_session_output_tokens_total``,
  ``token_tracker_session_cached_tokens_total``, ``token_tracker_session_cost_usd_total``,
  ``token_tracker_session_requests_total``, and the gauge
  ``token_tracker_session_last_request_timestamp_seconds{session_id}``.
Gauges: ``token_tracker_sessions``, ``token_tracker_price_usd_per_token{model,kind}``,
  ``token_tracker_budget_usd{scope}``, ``token_tracker_ledger_last_record_timestamp_seconds``,
  ``token_tracker_ledger_size_bytes``, ``token_tracker_build_info{version}``.
Ledger counters: ``token_tracker_ledger_records_total``,
  ``token_tracker_ledger_recovered_tail_total``.
GenAI semantic conventions: histogram ``gen_ai.client.token.usage`` (unit ``{token}``)
  with ``gen_ai.token.type``, ``gen_ai.request.model``, ``gen_ai.provider.name`` and
  ``gen_ai.operation.name``, one observation per token type per request seen.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from .pricing import NANO_PER_USD
from .state import CACHED, COST, CREATED, IN, OUT, REQUESTS, SAVINGS, UNPRICED

if TYPE_CHECKING:
    from .tracker import TokenTracker

SCOPE_NAME = "token_tracker"
DEFAULT_BUDGETS: Mapping[str, float] = {"session": 1.0, "day": 10.0, "month": 200.0}
# The GenAI semantic conventions' advisory bucket boundaries for token usage.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)  # fmt: skip
# name, index in a totals list, unit, description. Instruments in USD report
# nano-dollar totals scaled to dollars.
_PER_MODEL = (
    ("token_tracker_input_tokens", IN, "{token}",
     "Input tokens, including cached and cache-creation tokens, per model."),
    ("token_tracker_output_tokens", OUT, "{token}", "Output tokens per model."),
    ("token_tracker_cached_tokens", CACHED, "{token}",
     "Input tokens read from the prompt cache, per model."),
    ("token_tracker_cache_creation_tokens", CREATED, "{token}",
     "Input tokens written to the prompt cache, per model."),
    ("token_tracker_cost_usd", COST, "USD",
     "Cost in US dollars, fixed when each request was recorded, per model."),
    ("token_tracker_requests", REQUESTS, "{request}", "Requests recorded per model."),
    ("token_tracker_cache_savings_usd", SAVINGS, "USD",
     "What cached input saved against the full input price, per model."),
    ("token_tracker_unpriced_tokens", UNPRICED, "{token}",
     "Tokens recorded for models with no price (their cost counts as 0)."),
)  # fmt: skip
_PER_SESSION = (
    ("token_tracker_session_input_tokens", IN, "{token}", "Input tokens per session and model."),
    ("token_tracker_session_output_tokens", OUT, "{token}",
     "Output tokens per session and model."),
    ("token_tracker_session_cached_tokens", CACHED, "{token}",
     "Cached input tokens per session and model."),
    ("token_tracker_session_cost_usd", COST, "USD", "Cost in US dollars per session and model."),
    ("token_tracker_session_requests", REQUESTS, "{request}", "Requests per session and model."),
)  # fmt: skip
# name, is a counter, _View attribute, unit, description
_LEDGER = (
    ("token_tracker_sessions", False, "sessions", "{session}", "Sessions in the ledger."),
    ("token_tracker_ledger_records", True, "records", "{record}",
     "Request records in the ledger."),
    ("token_tracker_ledger_recovered_tail", True, "recovered", "{event}",
     "Times a torn, never-acknowledged final record was cut off on recovery."),
    ("token_tracker_ledger_last_record_timestamp_seconds", False, "last_ts", "s",
     "Unix time of the newest request in the ledger."),
    ("token_tracker_ledger_size_bytes", False, "size", "By",
     "Bytes on disk of the ledger snapshot and journal."),
)  # fmt: skip
UNLIMITED_SERIES = 2**31 - 1
# Observations made in callbacks have no trace context; passing one spares the SDK a
# context lookup per series.
_NO_CONTEXT = Context()


@dataclass(frozen=True)
class MetricsOptions:
    """What the per-session families show, and the budget thresholds."""

    #: Seconds after its last request that a session leaves the per-session
    #: families; 0 keeps every session.
    session_ttl: float = 24 * 3600.0
    #: Keep at most this many sessions (the most recent) in them; None: no cap.
    max_sessions: int | None = None
    #: False removes the per-session families.
    session_metrics: bool = True
    budgets: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    #: ``gen_ai.provider.name`` for the GenAI histogram.
    provider_name: str = "anthropic"

    def __post_init__(self) -> None:
        if self.session_ttl < 0:
            raise ValueError(f"session_ttl must be >= 0, got {self.session_ttl}")
        if self.max_sessions is not None and self.max_sessions < 0:
            raise ValueError(f"max_sessions must be >= 0, got {self.max_sessions}")
        for scope, value in self.budgets.items():
            if scope not in DEFAULT_BUDGETS:
                raise ValueError(f"budget scope must be session, day or month, got {scope!r}")
            if not value >= 0:
                raise ValueError(f"budget for {scope!r} must be >= 0, got {value}")


class _View:
    """One consistent read of the ledger, shared by every callback of a collection."""

    __slots__ = ("last_ts", "model_rows", "records", "recovered",
                 "session_last", "session_rows", "sessions", "size")  # fmt: skip

    def __init__(self) -> None:
        self.model_rows: list[tuple[dict[str, str], list[int]]] = []
        self.session_rows: list[tuple[dict[str, str], list[int]]] = []
        self.session_last: list[tuple[dict[str, str], float]] = []
        self.sessions = self.records = self.recovered = self.size = 0
        self.last_ts = 0.0


class TrackerMetrics:
    """Registers the instruments on a meter from ``meter_provider``."""

    def __init__(
        self,
        tracker: TokenTracker,
        meter_provider: MeterProvider,
        options: MetricsOptions | None = None,
        *,
        version: str = "",
    ) -> None:
        self.tracker = tracker
        self.options = options or MetricsOptions()
        self._version = version
        self._view = _View()
        self._model_attrs: dict[str, dict[str, str]] = {}
        self._pair_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._sid_attrs: dict[str, dict[str, str]] = {}
        meter = meter_provider.get_meter(SCOPE_NAME, version or None)
        self._register(meter)
        hist = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used, per request.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._histogram = hist
        self._hist_attrs: dict[tuple[str, str], dict[str, str]] = {}
        tracker._ledger.listeners.append(self._on_request)

    # -- instruments -------------------------------------------------------------------

    def _register(self, meter: Any) -> None:
        counter = meter.create_observable_counter
        gauge = meter.create_observable_gauge
        for i, (name, index, unit, description) in enumerate(_PER_MODEL):
            # The first callback of a collection refreshes the view the others read.
            callback = self._rows("model_rows", index, unit == "USD", refresh=i == 0)
            counter(name, [callback], unit, description)
        if self.options.session_metrics:
            for name, index, unit, description in _PER_SESSION:
                counter(name, [self._rows("session_rows", index, unit == "USD")], unit, description)
            gauge("token_tracker_session_last_request_timestamp_seconds", [self._session_last],
                  "s", "Unix time of the session's latest request.")  # fmt: skip
        gauge("token_tracker_price_usd_per_token", [self._prices], "USD",
              "Configured price per token, by model and kind.")  # fmt: skip
        gauge("token_tracker_budget_usd", [self._budgets], "USD",
              "Budgets from configuration, for alert rules to compare against.")  # fmt: skip
        for name, is_counter, attribute, unit, description in _LEDGER:
            (counter if is_counter else gauge)(name, [self._scalar(attribute)], unit, description)
        gauge("token_tracker_build_info", [self._build_info], "1",
              "Always 1; the version label names the exporter's version.")  # fmt: skip

    def _rows(
        self, rows: str, index: int, usd: bool, refresh: bool = False
    ) -> Callable[..., Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            view = self._refresh() if refresh else self._view
            if usd:
                return [
                    Observation(t[index] / NANO_PER_USD, a, _NO_CONTEXT)
                    for a, t in getattr(view, rows)
                ]
            return [Observation(t[index], a, _NO_CONTEXT) for a, t in getattr(view, rows)]

        return callback

    def _scalar(self, name: str) -> Callable[..., Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(getattr(self._view, name))]

        return callback

    def _session_last(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(ts, a, _NO_CONTEXT) for a, ts in self._view.session_last]

    def _prices(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for model, price in self.tracker.prices.items():
            for kind, usd in price.per_token_usd().items():
                out.append(Observation(usd, {"model": model, "kind": kind}))
        return out

    def _budgets(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"scope": k}) for k, v in self.options.budgets.items()]

    def _build_info(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1, {"version": self._version})]

    # -- the shared view -----------------------------------------------------------------

    def _refresh(self) -> _View:
        """Read the ledger once per collection (the first callback calls this)."""
        state, lock = self.tracker._read_state()
        view = _View()
        now = time.time()
        options = self.options
        with lock:
            model_attrs = self._model_attrs
            for model, t in state.models.items():
                attrs = model_attrs.get(model)
                if attrs is None:
                    attrs = model_attrs[model] = {"model": model}
                view.model_rows.append((attrs, t[:]))
            view.sessions = len(state.sessions)
            view.records = state.records
            view.recovered = state.recovered_tail
            view.last_ts = state.last_record_ts
            if options.session_metrics:
                self._session_rows(view, state.sessions, now)
        view.size = self.tracker._ledger.size_bytes()
        self._view = view
        return view

    def _session_rows(self, view: _View, sessions: Mapping[str, Any], now: float) -> None:
        options = self.options
        items: Iterable[tuple[str, Any]] = sessions.items()
        if options.session_ttl:
            horizon = now - options.session_ttl
            items = [(sid, s) for sid, s in items if s.last_updated >= horizon]
        if options.max_sessions is not None and len(sessions) > options.max_sessions:
            items = heapq.nlargest(options.max_sessions, items, key=lambda i: i[1].last_updated)
        pair_attrs, sid_attrs = self._pair_attrs, self._sid_attrs
        rows, last = view.session_rows, view.session_last
        for sid, s in items:
            attrs = sid_attrs.get(sid)
            if attrs is None:
                attrs = sid_attrs[sid] = {"session_id": sid}
            last.append((attrs, s.last_updated))
            for model, t in s.models.items():
                pair = pair_attrs.get((sid, model))
                if pair is None:
                    pair = pair_attrs[(sid, model)] = {"session_id": sid, "model": model}
                rows.append((pair, t[:]))

    # -- the GenAI histogram ---------------------------------------------------------------

    def _on_request(self, rec: list[Any]) -> None:
        model = rec[3]
        for token_type, value in (("input", rec[4]), ("output", rec[5])):
            attrs = self._hist_attrs.get((model, token_type))
            if attrs is None:
                attrs = self._hist_attrs[(model, token_type)] = {
                    "gen_ai.token.type": token_type,
                    "gen_ai.request.model": model,
                    "gen_ai.provider.name": self.options.provider_name,
                    "gen_ai.operation.name": "chat",
                }
            self._histogram.record(value, attrs)
