"""Property: any sequence of valid calls, replayed from disk, equals the writer's totals."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from token_tracker import MODEL_PRICING, TokenTracker

MODELS = [*MODEL_PRICING, "claude-sonnet-4-5-20250929", "unknown-model-x"]
SESSION_IDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> tuple:
    input_tokens = draw(st.integers(0, 10**7))
    cached = draw(st.integers(0, input_tokens))
    created = draw(st.integers(0, input_tokens - cached))
    return (
        "track",
        draw(SESSION_IDS),
        draw(st.sampled_from(MODELS)),
        input_tokens,
        draw(st.integers(0, 10**7)),
        cached,
        created,
    )


OPS = st.lists(
    st.one_of(
        requests(),
        requests(),
        requests(),
        st.tuples(st.just("reset"), SESSION_IDS),
        st.tuples(st.just("compact")),
    ),
    max_size=40,
)


def _view(t: TokenTracker) -> tuple:
    sessions = {
        sid: (
            s.model_name,
            s.request_count,
            s.total_usage,
            s.total_cost_usd,
            s.unpriced_tokens,
            s.cost_savings_from_cache,
            s.created_at,
            s.last_updated,
            {
                m: (mu.usage, mu.cost_usd, mu.request_count, mu.unpriced_tokens)
                for m, mu in s.models.items()
            },
        )
        for sid, s in t.get_all_sessions().items()
    }
    g = t.get_global_usage()
    return sessions, g, g.cost_usd, t.get_global_cost()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, small_journal=st.booleans())
def test_replay_from_disk_equals_memory(ops: list[tuple], small_journal: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.json"
        max_bytes = 512 if small_journal else 1 << 20
        model_totals: dict[str, int] = {}
        with TokenTracker(path, journal_max_bytes=max_bytes) as writer:
            for op in ops:
                if op[0] == "track":
                    _, sid, model, i, o, c, w = op
                    writer.track_request(sid, model, i, o, c, cache_creation_tokens=w)
                    model_totals[sid] = model_totals.get(sid, 0) + i + o
                elif op[0] == "reset":
                    assert writer.reset_session_usage(op[1]) == (op[1] in model_totals)
                    model_totals.pop(op[1], None)
                else:
                    writer.compact()
            in_memory = _view(writer)
            assert {sid: s[2].total_tokens for sid, s in in_memory[0].items()} == model_totals
            with TokenTracker(path) as reader:  # a second live process view
                assert _view(reader) == in_memory
        with TokenTracker(path) as fresh:
            assert _view(fresh) == in_memory
            fresh.compact()
        with TokenTracker(path) as fresh:
            assert _view(fresh) == in_memory
