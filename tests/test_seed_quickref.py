"""The seed quick reference runs verbatim (apart from its import line) and prints its values.

Two more substitutions keep the run off the real machine, both on literal text only:
HOME is a temporary directory (so ``TokenTracker()`` writes under it), and the
example's ``"/custom/path.json"`` becomes a path in a temporary directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conftest import seed_file
from token_tracker import MODEL_PRICING

SEED_IMPORT = re.compile(r"from claude_multi_terminal\.streaming import \((?P<names>[^)]*)\)", re.S)


def _blocks() -> list[str]:
    text = seed_file("token-tracker-quick-reference.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _titled_blocks() -> dict[str, str]:
    """Code blocks by the heading above them."""
    text = seed_file("token-tracker-quick-reference.md").read_text(encoding="utf-8")
    out = {}
    for match in re.finditer(
        r"^#+ (?P<title>[^\n]+)\n+```python\n(?P<code>.*?)```", text, re.M | re.S
    ):
        out[match["title"].strip()] = match["code"]
    return out


def test_the_quick_reference_has_the_expected_blocks() -> None:
    titles = list(_titled_blocks())
    assert titles == [
        "Import",
        "Initialize",
        "Track Requests",
        "Get Usage",
        "Compact (for status bars)",
        "Detailed (for reports)",
        "Status Bar Update",
        "Cost Alert",
    ]
    assert len(_blocks()) == len(titles)


def _import_block(code: str) -> str:
    match = SEED_IMPORT.search(code)
    assert match, code
    names = [n.strip() for n in match["names"].split(",") if n.strip()]
    assert names == [
        "TokenTracker",
        "format_usage_compact",
        "format_usage_detailed",
        "MODEL_PRICING",
    ]
    return SEED_IMPORT.sub(f"from token_tracker import ({', '.join(names)})", code)


def _run(code: str, namespace: dict[str, Any]) -> None:
    exec(compile(code, "<token-tracker-quick-reference.md>", "exec"), namespace)


@pytest.mark.parametrize("use_custom_path", [False, True])
def test_quick_reference_runs_verbatim(
    use_custom_path: bool, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = _titled_blocks()
    custom = tmp_path / "custom" / "path.json"
    warnings: list[str] = []
    ns: dict[str, Any] = {"__name__": "quickref", "show_warning": warnings.append}

    _run(_import_block(blocks["Import"]), ns)

    init = blocks["Initialize"]
    assert '"/custom/path.json"' in init
    if use_custom_path:
        init = init.replace('"/custom/path.json"', repr(str(custom)))
        _run(init, ns)
        assert ns["tracker"].persistence_path == custom
    else:
        # only the default-path statement: the tracker lives under the temporary HOME
        first = init.splitlines()[0]
        assert first.startswith("tracker = TokenTracker()")
        _run(first, ns)
        assert ns["tracker"].persistence_path == home / ".multi-term" / "token_usage.json"
    tracker = ns["tracker"]
    try:
        _run(blocks["Track Requests"], ns)
        capsys.readouterr()
        _run(blocks["Get Usage"], ns)
        printed = capsys.readouterr().out.splitlines()
        assert printed == ["2300", "0.01542", "2300"]

        _run(blocks["Compact (for status bars)"], ns)
        assert ns["text"] == "2.3K tok (400 cached) $0.02"
        _run(blocks["Detailed (for reports)"], ns)
        assert ns["text"] == "In: 1.5K tok, Out: 800 tok, Cost: $0.02 (400 cached)"

        _run(blocks["Status Bar Update"], ns)
        assert ns["update_status"]("session-123") == "2.3K tok (400 cached) $0.02"
        assert ns["update_status"]("no-such-session") == "No usage"

        ns["session_id"] = "session-123"
        _run(blocks["Cost Alert"], ns)
        assert warnings == []
        # an expensive session trips the alert: 20K opus output tokens = $1.50
        tracker.track_request("big", "claude-opus-4.6", 0, 20_000)
        ns["session_id"] = "big"
        _run(blocks["Cost Alert"], ns)
        assert warnings == ["Session cost: $1.50"]
    finally:
        tracker.close()
    # the ledger really holds it: a new tracker on the same path sees the same
    from token_tracker import TokenTracker

    with TokenTracker(tracker.persistence_path) as again:
        assert again.get_global_usage().total_tokens == 22_300
    assert not Path("/custom/path.json.journal").exists()


def test_quick_reference_pricing_table_matches() -> None:
    text = seed_file("token-tracker-quick-reference.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (claude-[^ |]+) \| \$([0-9.]+) \| \$([0-9.]+) \|$", text, re.M)
    assert rows
    assert {m: {"input": float(i), "output": float(o)} for m, i, o in rows} == MODEL_PRICING
