"""The ledger's aggregate state and the JSON snapshot it is saved as.

Memory is O(sessions x models): requests are folded into running totals, never
kept one by one.

Snapshot file (the ledger path itself, e.g. ``~/.multi-term/token_usage.json``),
``schema_version`` 2. It keeps the earlier tracker's top-level keys so old
readers still find ``global_summary`` and ``sessions``::

    {
      "schema_version": 2,
      "format": "token-tracker-ledger",
      "generated_at": 1771323001.0,
      "journal_generation": 3,          # the journal generation that continues it
      "journal_folded_bytes": 5120,     # bytes of generation 2's journal it holds (recovery)
      "ledger_stats": {"records": 120, "recovered_tail": 0, "last_record_timestamp": 1771323000.0},
      "global_summary": {... totals of current sessions, earlier shape ...},
      "sessions": {
        "<session id>": {
          "session_id": ..., "model_name": <latest model>, "created_at": ..., "last_updated": ...,
          "request_count": ..., "total_cost_usd": ..., "total_usage": {...},
          "models": {"<model>": <totals>}
        }
      },
      "models": {"<model>": <totals>},   # lifetime per model; resets never lower it
      "model_pricing": {...}
    }

``<totals>`` is ``{"input_tokens", "output_tokens", "cached_tokens",
"cache_creation_tokens", "cost_nanos", "savings_nanos", "request_count",
"unpriced_tokens"}``. Costs are integer nano-dollars; ``total_cost_usd`` is
derived for readers of the earlier format.

Schema 1 is the earlier tracker's file (no ``schema_version``): it loads with its
recorded totals and costs, one model per session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .pricing import NANO_PER_USD, PriceTable
from .usage import ModelUsage, SessionTokenUsage, TokenUsage

SCHEMA_VERSION = 2
FORMAT_NAME = "token-tracker-ledger"
_FOLDED_KEY = "journal_folded_bytes"

# Positions in a totals list; lists keep the catch-up loop cheap.
IN, OUT, CACHED, CREATED, COST, SAVINGS, REQUESTS, UNPRICED = range(8)
_TOTAL_KEYS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "cost_nanos",
    "savings_nanos",
    "request_count",
    "unpriced_tokens",
)


class SnapshotError(ValueError):
    """A snapshot document does not match its schema."""


class Snapshot(NamedTuple):
    """A decoded snapshot document."""

    state: LedgerState
    #: The journal generation that continues this snapshot.
    generation: int
    schema: int
    #: Bytes of the previous journal generation the snapshot holds (None: not said).
    folded_bytes: int | None


class Session:
    """Running totals of one session."""

    __slots__ = ("created_at", "last_updated", "model_name", "models")

    def __init__(self, created_at: float, model_name: str) -> None:
        self.created_at = created_at
        self.last_updated = created_at
        self.model_name = model_name
        self.models: dict[str, list[int]] = {}


class LedgerState:
    """Everything the ledger knows, folded from the snapshot and journal records."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.models: dict[str, list[int]] = {}
        self.records = 0
        self.recovered_tail = 0
        self.last_record_ts = 0.0

    # -- applying journal records -------------------------------------------------

    def apply(self, rec: list[Any]) -> None:
        """Fold one decoded journal record in; raises on a malformed one."""
        kind = rec[0]
        if kind == "r":
            self.apply_request(rec)
        elif kind == "x":
            self.sessions.pop(rec[2], None)
        elif kind == "t":
            self.recovered_tail += 1
        elif kind != "h":
            raise SnapshotError(f"unknown record kind {kind!r}")

    def apply_request(self, rec: list[Any]) -> None:
        _, ts, sid, model, i, o, c, w, cost, sav, unpriced, _crc = rec
        if type(i) is not int or type(o) is not int or type(cost) is not int:
            raise SnapshotError("request record with non-integer counts")
        session = self.sessions.get(sid)
        if session is None:
            session = self.sessions[sid] = Session(ts, model)
        session.model_name = model
        if ts > session.last_updated:
            session.last_updated = ts
        unpriced_tokens = i + o if unpriced else 0
        for table in (session.models, self.models):
            t = table.get(model)
            if t is None:
                table[model] = [i, o, c, w, cost, sav, 1, unpriced_tokens]
            else:
                t[IN] += i
                t[OUT] += o
                t[CACHED] += c
                t[CREATED] += w
                t[COST] += cost
                t[SAVINGS] += sav
                t[REQUESTS] += 1
                t[UNPRICED] += unpriced_tokens
        self.records += 1
        if ts > self.last_record_ts:
            self.last_record_ts = ts

    # -- snapshots for callers ----------------------------------------------------

    def session_usage(self, sid: str) -> SessionTokenUsage | None:
        session = self.sessions.get(sid)
        return None if session is None else _session_usage(sid, session)

    def all_sessions(self) -> dict[str, SessionTokenUsage]:
        return {sid: _session_usage(sid, s) for sid, s in self.sessions.items()}

    def global_totals(self) -> list[int]:
        total = [0] * 8
        for session in self.sessions.values():
            for t in session.models.values():
                for k in range(8):
                    total[k] += t[k]
        return total

    # -- the JSON snapshot --------------------------------------------------------

    def to_document(
        self, generation: int, now: float, prices: PriceTable, folded_bytes: int | None = None
    ) -> dict[str, Any]:
        sessions = {}
        for sid, s in self.sessions.items():
            total = _sum(s.models.values())
            sessions[sid] = {
                "session_id": sid,
                "model_name": s.model_name,
                "created_at": s.created_at,
                "last_updated": s.last_updated,
                "request_count": total[REQUESTS],
                "total_cost_usd": total[COST] / NANO_PER_USD,
                "total_usage": usage_of(total).to_dict(),
                "models": {m: dict(zip(_TOTAL_KEYS, t, strict=True)) for m, t in s.models.items()},
            }
        g = self.global_totals()
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "format": FORMAT_NAME,
            "generated_at": now,
            "journal_generation": generation,
            "ledger_stats": {
                "records": self.records,
                "recovered_tail": self.recovered_tail,
                "last_record_timestamp": self.last_record_ts,
            },
            "global_summary": summary_of(g, len(self.sessions)),
            "sessions": sessions,
            "models": {m: dict(zip(_TOTAL_KEYS, t, strict=True)) for m, t in self.models.items()},
            "model_pricing": prices.seed_shape(),
        }
        if folded_bytes is not None:
            doc[_FOLDED_KEY] = folded_bytes
        return doc

    @classmethod
    def from_document(cls, doc: object, prices: PriceTable) -> Snapshot:
        """Decode a snapshot document of schema 1 or 2."""
        if not isinstance(doc, dict):
            raise SnapshotError("top level is not a JSON object")
        version = doc.get("schema_version", 1)
        if version == 1:
            return Snapshot(_from_v1(doc, prices), 1, 1, None)
        if version != SCHEMA_VERSION:
            raise SnapshotError(f"schema_version {version!r} is not supported (expected 1 or 2)")
        state = cls()
        try:
            generation = _int(doc["journal_generation"], "journal_generation")
            stats = doc["ledger_stats"]
            state.records = _int(stats["records"], "ledger_stats.records")
            state.recovered_tail = _int(stats["recovered_tail"], "ledger_stats.recovered_tail")
            state.last_record_ts = float(stats["last_record_timestamp"])
            for sid, entry in _dict(doc["sessions"], "sessions").items():
                s = Session(float(entry["created_at"]), str(entry["model_name"]))
                s.last_updated = float(entry["last_updated"])
                s.models = _totals_map(entry["models"], f"sessions[{sid!r}].models")
                state.sessions[sid] = s
            state.models = _totals_map(doc["models"], "models")
        except KeyError as exc:
            raise SnapshotError(f"missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(str(exc)) from None
        folded = doc.get(_FOLDED_KEY)
        folded_bytes = folded if type(folded) is int and folded >= 0 else None
        return Snapshot(state, generation, SCHEMA_VERSION, folded_bytes)


def _int(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise SnapshotError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SnapshotError(f"{where}: expected an object")
    return value


def _totals_map(value: object, where: str) -> dict[str, list[int]]:
    out = {}
    for model, totals in _dict(value, where).items():
        totals = _dict(totals, f"{where}[{model!r}]")
        out[model] = [_int(totals[k], f"{where}[{model!r}].{k}") for k in _TOTAL_KEYS]
    return out


def _from_v1(doc: Mapping[str, Any], prices: PriceTable) -> LedgerState:
    """The earlier tracker's file: keep its recorded totals and costs exactly."""
    state = LedgerState()
    try:
        for sid, entry in _dict(doc.get("sessions", {}), "sessions").items():
            usage = _dict(entry["total_usage"], f"sessions[{sid!r}].total_usage")
            model = str(entry.get("model_name") or "unknown")
            i = _int(usage.get("input_tokens", 0), f"sessions[{sid!r}].input_tokens")
            o = _int(usage.get("output_tokens", 0), f"sessions[{sid!r}].output_tokens")
            c = _int(usage.get("cached_tokens", 0), f"sessions[{sid!r}].cached_tokens")
            w = _int(usage.get("cache_creation_tokens", 0), f"sessions[{sid!r}].cache_creation")
            cost = round(float(entry.get("total_cost_usd", 0.0)) * NANO_PER_USD)
            price = prices.lookup(model)
            savings = price.savings_nanos(c) if price else 0
            requests = _int(entry.get("request_count", 0), f"sessions[{sid!r}].request_count")
            created = float(entry.get("created_at", 0.0))
            s = Session(created, model)
            s.last_updated = float(entry.get("last_updated", created))
            s.models[model] = [i, o, c, w, cost, savings, requests, 0]
            state.sessions[str(sid)] = s
            lifetime = state.models.setdefault(model, [0] * 8)
            for k in range(8):
                lifetime[k] += s.models[model][k]
            state.records += requests
            state.last_record_ts = max(state.last_record_ts, s.last_updated)
    except KeyError as exc:
        raise SnapshotError(f"earlier-format session lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"earlier-format ledger: {exc}") from None
    return state


def _sum(totals: Any) -> list[int]:
    out = [0] * 8
    for t in totals:
        for k in range(8):
            out[k] += t[k]
    return out


def usage_of(t: list[int]) -> TokenUsage:
    """A caller's TokenUsage for a totals list."""
    return TokenUsage(t[IN], t[OUT], t[CACHED], t[CREATED], t[COST] / NANO_PER_USD)


def summary_of(t: list[int], session_count: int) -> dict[str, Any]:
    """The report's ``global_summary`` for global totals."""
    return {
        "total_tokens": t[IN] + t[OUT],
        "input_tokens": t[IN],
        "output_tokens": t[OUT],
        "cached_tokens": t[CACHED],
        "cache_creation_tokens": t[CREATED],
        "total_cost_usd": t[COST] / NANO_PER_USD,
        "cost_savings_from_cache": t[SAVINGS] / NANO_PER_USD,
        "unpriced_tokens": t[UNPRICED],
        "request_count": t[REQUESTS],
        "session_count": session_count,
    }


def _session_usage(sid: str, s: Session) -> SessionTokenUsage:
    total = _sum(s.models.values())
    models = {
        m: ModelUsage(
            model_name=m,
            usage=usage_of(t),
            cost_usd=t[COST] / NANO_PER_USD,
            request_count=t[REQUESTS],
            cost_savings_from_cache=t[SAVINGS] / NANO_PER_USD,
            unpriced_tokens=t[UNPRICED],
        )
        for m, t in s.models.items()
    }
    return SessionTokenUsage(
        session_id=sid,
        model_name=s.model_name,
        total_usage=usage_of(total),
        total_cost_usd=total[COST] / NANO_PER_USD,
        request_count=total[REQUESTS],
        created_at=s.created_at,
        last_updated=s.last_updated,
        cost_savings_from_cache=total[SAVINGS] / NANO_PER_USD,
        unpriced_tokens=total[UNPRICED],
        models=models,
    )
