"""The HTML status page: global totals and one compact and one detailed line per session.

Self-contained (inline CSS, no scripts or external assets) and refreshed by a
``<meta http-equiv="refresh">``; every value from the tracker is HTML-escaped.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape
from typing import TYPE_CHECKING, Protocol

from .formatting import format_cost, format_tokens, format_usage_compact, format_usage_detailed

if TYPE_CHECKING:
    from .usage import SessionTokenUsage, TokenUsage

#: Sessions listed at most; the rest are summarised as "N more".
MAX_SESSIONS = 500

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.2em 0 .4em}
dl.totals{display:flex;flex-wrap:wrap;gap:.5em 2em;margin:0}
dl.totals div{background:#fff;border:1px solid #ddd;border-radius:4px;padding:.4em .8em}
dt{font-size:.8em;color:#666}dd{margin:0;font-size:1.3em;font-weight:600}
ol.sessions{list-style:none;padding:0;margin:0}
ol.sessions li{background:#fff;border:1px solid #ddd;border-radius:4px;
padding:.4em .8em;margin:.3em 0}
.sid{font-family:ui-monospace,monospace;font-weight:600;white-space:pre-wrap;
word-break:break-all}
.detailed{color:#555;font-size:.9em}.warn{color:#a40}.more{color:#666;font-style:italic}
"""


class StatusTracker(Protocol):
    """The part of the tracker the status page reads."""

    def get_global_usage(self) -> TokenUsage: ...

    def get_global_cost(self) -> float: ...

    def get_all_sessions(self) -> dict[str, SessionTokenUsage]: ...


def render_status_page(
    tracker: StatusTracker, *, refresh_seconds: int = 5, max_sessions: int = MAX_SESSIONS
) -> str:
    """Render the whole page; ``refresh_seconds <= 0`` turns the auto-refresh off."""
    usage = tracker.get_global_usage()
    # The usage carries its recorded cost; asking again would read the ledger twice.
    cost = usage.cost_usd if usage.cost_usd is not None else tracker.get_global_cost()
    sessions = tracker.get_all_sessions()
    ordered = sorted(sessions.values(), key=lambda s: (-_sort_time(s.last_updated), s.session_id))
    shown = ordered[: max(0, max_sessions)]
    refresh = (
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">'
        if refresh_seconds > 0
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        refresh,
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        "<title>Token tracker</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Token tracker</h1>",
        '<dl class="totals" id="totals">',
        _total("Tokens", format_tokens(usage.total_tokens)),
        _total("Cached", format_tokens(usage.cached_tokens)),
        _total("Cost", format_cost(cost)),
        _total("Sessions", str(len(sessions))),
        "</dl>",
        f"<h2>Sessions ({len(sessions)})</h2>",
    ]
    if not shown:
        parts.append('<p class="more">No sessions yet.</p>')
    else:
        parts.append('<ol class="sessions" id="sessions">')
        parts.extend(_session_item(s) for s in shown)
        parts.append("</ol>")
    if len(ordered) > len(shown):
        hidden = len(ordered) - len(shown)
        parts.append(f'<p class="more">{hidden} more (least recently updated) not shown.</p>')
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _total(label: str, value: str) -> str:
    return f"<div><dt>{escape(label)}</dt><dd>{escape(value)}</dd></div>"


def _session_item(session: SessionTokenUsage) -> str:
    usage = session.total_usage
    model = session.model_name
    compact = format_usage_compact(usage, model)
    detailed = (
        f"{format_usage_detailed(usage, model)} · {session.request_count} "
        f"request{'' if session.request_count == 1 else 's'} · "
        f"cache hit {session.cache_hit_rate:.0%} · "
        f"saved {format_cost(session.cost_savings_from_cache)} by caching · "
        f"updated {_timestamp(session.last_updated)}"
    )
    if len(session.models) > 1:
        detailed += f" · models: {', '.join(sorted(session.models))}"
    warn = ""
    if session.unpriced_tokens:
        warn = (
            f' <span class="warn">{escape(format_tokens(session.unpriced_tokens))} '
            "tokens unpriced</span>"
        )
    return (
        '<li class="session">'
        f'<div class="compact"><span class="sid">{escape(session.session_id)}</span> '
        f"[{escape(model)}] {escape(compact)}</div>"
        f'<div class="detailed">{escape(detailed)}{warn}</div></li>'
    )


def _sort_time(value: float) -> float:
    # A NaN timestamp would make sorted() order arbitrary; treat it as oldest.
    return value if math.isfinite(value) else -math.inf


def _timestamp(value: float) -> str:
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "unknown"
