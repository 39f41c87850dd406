"""Four processes x 5,000 requests on one ledger, watched by a fifth live tracker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, subprocess_env
from token_tracker import TokenTracker, TokenUsage

PROCESSES = 4
REQUESTS = 5_000
MODELS = ("claude-sonnet-4.5", "claude-opus-4.6", "claude-haiku-4-5-20251001")

# Worker w records REQUESTS requests: session f"p{w}-{i % 3}", model MODELS[i % 3],
# input_tokens i + 1 (1..REQUESTS), output 2, cached 1 when i is even.
WORKER = r"""
import sys
from token_tracker import TokenTracker

path, worker, max_bytes, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
models = ("claude-sonnet-4.5", "claude-opus-4.6", "claude-haiku-4-5-20251001")
sys.stdin.readline()  # start together
with TokenTracker(path, journal_max_bytes=max_bytes) as t:
    for i in range(n):
        t.track_request(f"p{worker}-{i % 3}", models[i % 3], i + 1, 2, 1 - i % 2)
        if i % 1000 == 0:
            t.get_global_usage()  # readers catch up while others write and compact
print("done", flush=True)
"""


def _expected() -> tuple[dict[str, tuple[int, TokenUsage]], TokenUsage]:
    sessions: dict[str, tuple[int, TokenUsage]] = {}
    for w in range(PROCESSES):
        for k in range(3):
            idx = [i for i in range(REQUESTS) if i % 3 == k]
            sessions[f"p{w}-{k}"] = (
                len(idx),
                TokenUsage(
                    sum(i + 1 for i in idx),
                    2 * len(idx),
                    sum(1 - i % 2 for i in idx),
                ),
            )
    total = TokenUsage()
    for _, usage in sessions.values():
        total = total + usage
    return sessions, total


def _view(t: TokenTracker) -> dict[str, tuple[int, TokenUsage]]:
    return {sid: (s.request_count, s.total_usage) for sid, s in t.get_all_sessions().items()}


@pytest.mark.slow
def test_four_processes_and_a_live_fifth(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    expected_sessions, expected_total = _expected()
    with TokenTracker(path) as fifth:  # opened before the writers start, kept live
        assert fifth.get_global_usage() == TokenUsage()
        procs = [
            subprocess.Popen(
                [PYTHON, "-c", WORKER, str(path), str(w), "8192", str(REQUESTS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=subprocess_env(),
            )
            for w in range(PROCESSES)
        ]
        try:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            # the fifth reads while they write; what it sees never goes backwards
            seen = 0
            while any(proc.poll() is None for proc in procs):
                now = fifth.get_global_usage().output_tokens // 2
                assert now >= seen
                seen = now
            results = [proc.communicate(timeout=120) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        for proc, (out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err.decode()
            assert out == b"done\n"
        assert fifth.get_global_usage() == expected_total
        assert _view(fifth) == expected_sessions
        doc_generation = fifth.export_usage_report()
        assert doc_generation["global_summary"]["request_count"] == PROCESSES * REQUESTS
    with TokenTracker(path) as fresh:
        assert fresh.get_global_usage() == expected_total
        assert _view(fresh) == expected_sessions
        cost = fresh.get_global_cost()
    # costs are the exact sum of the per-request costs
    with TokenTracker(tmp_path / "reference.json") as ref:
        reference_cost = 0
        for i in range(REQUESTS):
            reference_cost += round(
                ref.track_request("r", MODELS[i % 3], i + 1, 2, 1 - i % 2).cost_usd * 10**9
            )
    assert cost == PROCESSES * reference_cost / 10**9
    assert not list(tmp_path.glob("*.corrupt-*"))
