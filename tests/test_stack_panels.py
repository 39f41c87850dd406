"""End to end: the dashboard panels, evaluated by a real Prometheus, return the numbers
the ledger holds: totals, per session, per model, and, for the range panels, the spend
recorded while Prometheus was watching.

The stack (tests/_stack.py) is shared with test_stack_e2e.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from _monitoring import (
    GRAFANA_VALUES,
    dashboards,
    panel_by_title,
    substitute,
    table_columns,
    target,
)
from _stack import UNPRICED_MODEL, Stack

pytestmark = pytest.mark.slow


# -- the numbers the ledger holds ---------------------------------------------------------------


def q(panel: dict[str, Any], ref: str = "A", **values: str) -> str:
    return substitute(target(panel, ref)["expr"], {**GRAFANA_VALUES, **values})


def test_compact_totals(stack: Stack) -> None:
    dash = dashboards()["token-spend-compact.json"]
    usage = stack.after["usage"]
    assert stack.scalar(q(panel_by_title(dash, "Cost · all time"))) == pytest.approx(
        stack.after["cost"], abs=1e-9
    )
    assert stack.scalar(q(panel_by_title(dash, "Tokens · all time"))) == usage.total_tokens
    assert stack.scalar(q(panel_by_title(dash, "Cached tokens · all time"))) == (
        usage.cached_tokens
    )
    assert stack.scalar(q(panel_by_title(dash, "Active sessions"))) == len(stack.after["sessions"])
    assert stack.scalar(q(panel_by_title(dash, "Spend rate ($/h)"))) > 0


def _between(value: float, delta: float) -> None:
    """increase() over the range: the live delta, plus at most a little extrapolation."""
    assert delta > 0
    assert delta * (1 - 1e-9) <= value <= delta * 1.3, (value, delta)


def test_compact_range_panels_show_the_spend_seen_live(stack: Stack) -> None:
    dash = dashboards()["token-spend-compact.json"]
    before, after = stack.before, stack.after
    _between(stack.scalar(q(panel_by_title(dash, "Cost · range"))), after["cost"] - before["cost"])
    _between(
        stack.scalar(q(panel_by_title(dash, "Tokens · range"))),
        after["usage"].total_tokens - before["usage"].total_tokens,
    )
    _between(
        stack.scalar(q(panel_by_title(dash, "Cached tokens · range"))),
        after["usage"].cached_tokens - before["usage"].cached_tokens,
    )
    # "today" with $__range = the time since midnight; here the 1h substitute
    _between(stack.scalar(q(panel_by_title(dash, "Cost today"))), after["cost"] - before["cost"])
    _between(
        stack.scalar(q(panel_by_title(dash, "Daily budget used"))),
        (after["cost"] - before["cost"]) / 10.0,
    )


def test_compact_session_table(stack: Stack) -> None:
    panel = panel_by_title(dashboards()["token-spend-compact.json"], "Sessions")
    columns = table_columns(panel)
    sessions = stack.after["sessions"]
    expected = {
        "Tokens": {sid: s.total_usage.total_tokens for sid, s in sessions.items()},
        "Cached": {sid: s.total_usage.cached_tokens for sid, s in sessions.items()},
        "Cost": {sid: s.total_cost_usd for sid, s in sessions.items()},
    }
    for ref, column in columns.items():
        got = stack.by(q(panel, ref), "session_id")
        assert got == pytest.approx(expected[column], abs=1e-9), column


def test_detailed_session_table(stack: Stack) -> None:
    panel = panel_by_title(dashboards()["token-spend-detailed.json"], "Sessions")
    sessions = stack.after["sessions"]
    value = {
        "In": lambda s: s.total_usage.input_tokens,
        "Out": lambda s: s.total_usage.output_tokens,
        "Cached": lambda s: s.total_usage.cached_tokens,
        "Cost": lambda s: s.total_cost_usd,
        "Requests": lambda s: s.request_count,
    }
    for ref, column in table_columns(panel).items():
        got = stack.by(q(panel, ref), "session_id")
        want = {sid: value[column](s) for sid, s in sessions.items()}
        assert got == pytest.approx(want, abs=1e-9), column


def test_detailed_model_table(stack: Stack) -> None:
    panel = panel_by_title(dashboards()["token-spend-detailed.json"], "Models")
    models, before = stack.after["models"], stack.before["models"]
    for ref, column in table_columns(panel).items():
        got = stack.by(q(panel, ref), "model")
        if column == "Cost · range":
            for model, row in models.items():
                delta = row["Cost"] - before.get(model, {}).get("Cost", 0.0)
                if delta:
                    _between(got[model], delta)
                else:
                    assert got.get(model, 0.0) == 0.0, model
            continue
        want = {model: row[column] for model, row in models.items()}
        assert got == pytest.approx(want, abs=1e-9), column


def test_detailed_breakdowns(stack: Stack) -> None:
    dash = dashboards()["token-spend-detailed.json"]
    models, sessions, usage = stack.after["models"], stack.after["sessions"], stack.after["usage"]
    assert stack.by(q(panel_by_title(dash, "Cost by model")), "model") == pytest.approx(
        {m: row["Cost"] for m, row in models.items()}, abs=1e-9
    )
    assert stack.by(q(panel_by_title(dash, "Top sessions by cost")), "session_id") == (
        pytest.approx({sid: s.total_cost_usd for sid, s in sessions.items()}, abs=1e-9)
    )
    assert stack.scalar(q(panel_by_title(dash, "Cache hit ratio · all time"))) == pytest.approx(
        usage.cached_tokens / usage.input_tokens
    )
    assert stack.scalar(q(panel_by_title(dash, "Cache savings · all time"))) == pytest.approx(
        sum(row["Cache savings"] for row in models.values()), abs=1e-9
    )
    unpriced = {m: row["Unpriced tokens"] for m, row in models.items() if row["Unpriced tokens"]}
    assert set(unpriced) == {UNPRICED_MODEL}
    assert stack.scalar(q(panel_by_title(dash, "Unpriced tokens · all time"))) == sum(
        unpriced.values()
    )
    assert stack.by(q(panel_by_title(dash, "Unpriced tokens")), "model") == unpriced


def test_detailed_ledger_health(stack: Stack) -> None:
    from token_tracker import __version__

    dash = dashboards()["token-spend-detailed.json"]
    assert stack.scalar(q(panel_by_title(dash, "Ledger records"))) == len(stack.requests)
    assert stack.scalar(q(panel_by_title(dash, "Torn-tail recoveries"))) == 0
    assert 0 <= stack.scalar(q(panel_by_title(dash, "Last record age"))) < 120
    assert stack.scalar(q(panel_by_title(dash, "Ledger size"))) > 0
    version = stack.query(q(panel_by_title(dash, "Exporter version")))
    assert [s["metric"]["version"] for s in version] == [__version__]


def test_model_and_session_variables_filter(stack: Stack) -> None:
    """Grafana formats a multi-value selection as an escaped regex alternation."""
    dash = dashboards()["token-spend-detailed.json"]
    models = stack.after["models"]
    picked = ["claude-haiku-4.5", "claude-sonnet-4.5"]
    regex = "(" + "|".join(re.escape(m).replace("\\", "\\\\") for m in picked) + ")"
    cost = stack.scalar(q(panel_by_title(dash, "Cost · all time"), model=regex))
    assert cost == pytest.approx(sum(models[m]["Cost"] for m in picked), abs=1e-9)
    table = panel_by_title(dash, "Sessions")
    got = stack.by(q(table, "D", session="docs-pass"), "session_id")
    assert got == pytest.approx({"docs-pass": stack.after["sessions"]["docs-pass"].total_cost_usd})
    # sessions with no sonnet usage drop out when only sonnet is selected
    sonnet = stack.by(q(table, "D", model="claude-sonnet-4\\\\.5"), "session_id")
    want = {
        sid: s.models["claude-sonnet-4.5"].cost_usd
        for sid, s in stack.after["sessions"].items()
        if "claude-sonnet-4.5" in s.models
    }
    assert sonnet == pytest.approx(want, abs=1e-9)
