"""The HTML status page: escaping, content, ordering, bounds, and a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _html import parse_page
from _tools import dump_dom, require_tool
from token_tracker import TokenTracker
from token_tracker.formatting import (
    format_cost,
    format_tokens,
    format_usage_compact,
    format_usage_detailed,
)
from token_tracker.server import ExporterServer
from token_tracker.statuspage import render_status_page
from token_tracker.usage import ModelUsage, SessionTokenUsage, TokenUsage

MODEL = "claude-sonnet-4.5"
ODD_IDS = [
    'say "hi"',
    "back\\slash",
    "<script>alert(1)</script>",
    "two\nlines",
    "emoji \U0001f680 caf\u00e9",
    "amp & 'single' &lt;",
]


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[TokenTracker]:
    t = TokenTracker(tmp_path / "ledger" / "token_usage.json")
    for i, session_id in enumerate(ODD_IDS):
        t.track_request(session_id, MODEL, 1500 + i, 800, 400)
    yield t
    t.close()


def test_odd_session_ids_are_escaped(tracker: TokenTracker) -> None:
    page = render_status_page(tracker)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;hi&quot;" in page
    parsed = parse_page(page)
    # Parsing the page back gives every id exactly: nothing lost, nothing injected.
    assert sorted(parsed.by_class["sid"]) == sorted(ODD_IDS)
    assert parsed.by_class.keys() >= {"compact", "detailed", "sid", "session"}


def test_compact_and_detailed_lines(tracker: TokenTracker) -> None:
    parsed = parse_page(render_status_page(tracker, refresh_seconds=7))
    sessions = tracker.get_all_sessions()
    compact = parsed.by_class["compact"]
    detailed = parsed.by_class["detailed"]
    assert len(compact) == len(detailed) == len(ODD_IDS)
    for session_id, session in sessions.items():
        line = f"{session_id} [{MODEL}] {format_usage_compact(session.total_usage, MODEL)}"
        assert line in compact
        assert any(
            d.startswith(format_usage_detailed(session.total_usage, MODEL)) for d in detailed
        )
    assert "· 1 request ·" in detailed[0]


def test_totals_and_refresh(tracker: TokenTracker) -> None:
    page = render_status_page(tracker, refresh_seconds=7)
    assert '<meta http-equiv="refresh" content="7">' in page
    totals = " ".join(parse_page(page).by_class["totals"])
    usage = tracker.get_global_usage()
    for text in (
        format_tokens(usage.total_tokens),
        format_tokens(usage.cached_tokens),
        format_cost(tracker.get_global_cost()),
        f"Sessions{len(ODD_IDS)}",
    ):
        assert text in totals
    assert "http-equiv" not in render_status_page(tracker, refresh_seconds=0)


class FakeTracker:
    """A duck-typed tracker with chosen timestamps."""

    def __init__(self, count: int) -> None:
        usage = TokenUsage(1000, 200, 100, 0, 0.01)
        self.sessions = {
            f"s{i}": SessionTokenUsage(
                session_id=f"s{i}",
                model_name="m",
                total_usage=usage,
                total_cost_usd=0.01,
                request_count=1,
                created_at=float(i),
                last_updated=float(i) if i != 3 else float("nan"),
                cost_savings_from_cache=0.0,
                unpriced_tokens=5 if i == 1 else 0,
                models={
                    "m": ModelUsage("m", usage, 0.01, 1, 0.0),
                    "n": ModelUsage("n", usage, 0, 0, 0),
                },
            )
            for i in range(count)
        }

    def get_global_usage(self) -> TokenUsage:
        return TokenUsage()

    def get_global_cost(self) -> float:
        return 0.0

    def get_all_sessions(self) -> dict[str, SessionTokenUsage]:
        return dict(self.sessions)


def test_sessions_newest_first_and_bounded() -> None:
    parsed = parse_page(render_status_page(FakeTracker(10), max_sessions=4))
    assert parsed.by_class["sid"] == ["s9", "s8", "s7", "s6"]
    assert "6 more" in "".join(parsed.by_class["more"])
    parsed = parse_page(render_status_page(FakeTracker(5)))
    assert parsed.by_class["sid"] == ["s4", "s2", "s1", "s0", "s3"]  # NaN time sorts last
    assert "5 tokens unpriced" in "".join(parsed.by_class["warn"])
    assert "models: m, n" in parsed.by_class["detailed"][0]


def test_no_sessions() -> None:
    assert "No sessions yet." in render_status_page(FakeTracker(0))


class _PageApp:
    def __init__(self, tracker: TokenTracker) -> None:
        self.tracker = tracker

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        return b"", "text/plain"

    def status_page(self) -> str:
        return render_status_page(self.tracker)

    def health(self) -> tuple[bool, str]:
        return True, "ok"


def test_page_renders_in_headless_chromium(tracker: TokenTracker, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    server = ExporterServer(_PageApp(tracker), port=0)
    server.start()
    try:
        dom = dump_dom(chromium, server.url + "/", tmp_path / "chromium-profile")
    finally:
        server.shutdown()
    parsed = parse_page(dom)
    assert sorted(parsed.by_class["sid"]) == sorted(ODD_IDS)
    compact = parsed.by_class["compact"]
    for session_id, session in tracker.get_all_sessions().items():
        assert (
            f"{session_id} [{MODEL}] {format_usage_compact(session.total_usage, MODEL)}" in compact
        )
    assert "<script" not in dom  # the id stayed text; no element was injected
    assert "Token tracker" in "".join(parsed.text)
