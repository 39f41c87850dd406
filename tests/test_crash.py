"""Writers killed with SIGKILL at random moments lose nothing acknowledged, duplicate nothing."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PYTHON, subprocess_env
from token_tracker import TokenTracker

# Records session f"w{worker}" with input_tokens 1, 2, 3, ... and prints each value
# only after track_request returned (acknowledged).
WRITER = r"""
import sys
from token_tracker import TokenTracker

path, worker, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
tracker = TokenTracker(path, journal_max_bytes=max_bytes)
out = sys.stdout
out.write("ready\n")
out.flush()
for i in range(1, 500_001):
    tracker.track_request(f"w{worker}", "claude-sonnet-4.5", i, 1)
    out.write(f"{i}\n")
    out.flush()
"""

ROUNDS = 5
WRITERS_PER_ROUND = 3


def _acknowledged(stdout: bytes) -> int:
    """The last value printed on a complete line (the writer may die mid-print)."""
    lines = stdout.split(b"\n")[:-1]  # drop the unterminated last piece
    values = [int(line) for line in lines if line and line != b"ready"]
    assert values == list(range(1, len(values) + 1))
    return len(values)


def _drain(proc: subprocess.Popen[bytes], sink: list[bytes]) -> threading.Thread:
    """Read a writer's stdout as it comes, so a full pipe never blocks it."""

    def run() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            sink.append(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _spawn(path: Path, worker: str, max_bytes: int, log_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-c", WRITER, str(path), worker, str(max_bytes)],
        stdout=subprocess.PIPE,
        stderr=(log_dir / f"{worker}.stderr").open("wb"),
        env=subprocess_env(),
    )


def _check(path: Path, acked: dict[str, int]) -> None:
    with TokenTracker(path) as t:
        sessions = t.get_all_sessions()
        assert set(sessions) == {f"w{w}" for w in acked}
        for worker, printed in acked.items():
            s = sessions[f"w{worker}"]
            k = s.request_count
            # everything acknowledged is there; at most the one in flight is extra
            assert k in (printed, printed + 1), (worker, printed, k)
            # exactly the prefix 1..k, each once: no loss, no duplicate
            assert s.total_usage.input_tokens == k * (k + 1) // 2, (worker, printed, k)
            assert s.total_usage.output_tokens == k
        total = t.get_global_usage()
        assert total.output_tokens == sum(s.request_count for s in sessions.values())


@pytest.mark.slow
@pytest.mark.parametrize("max_bytes", [2048, 1 << 20])
def test_sigkill_at_random_moments(tmp_path: Path, max_bytes: int) -> None:
    rng = random.Random(20250929 + max_bytes)
    path = tmp_path / "ledger.json"
    acked: dict[str, int] = {}
    for round_ in range(ROUNDS):
        procs = {
            f"r{round_}n{n}": _spawn(path, f"r{round_}n{n}", max_bytes, tmp_path)
            for n in range(WRITERS_PER_ROUND)
        }
        outputs: dict[str, list[bytes]] = {w: [] for w in procs}
        try:
            for proc in procs.values():
                assert proc.stdout is not None
                assert proc.stdout.readline() == b"ready\n"
            drains = {w: _drain(proc, outputs[w]) for w, proc in procs.items()}
            # kill them one by one at random moments while the others keep writing
            for proc in procs.values():
                time.sleep(rng.uniform(0.05, 0.4))
                proc.send_signal(signal.SIGKILL)
            for worker, proc in procs.items():
                proc.wait(timeout=30)
                drains[worker].join(timeout=30)
                assert not drains[worker].is_alive()
                out = b"".join(outputs[worker])
                assert proc.returncode == -signal.SIGKILL, (
                    worker,
                    (tmp_path / f"{worker}.stderr").read_text(),
                )
                acked[worker] = _acknowledged(out)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        assert all(v > 0 for k, v in acked.items() if k.startswith(f"r{round_}"))
        _check(path, acked)
    # and once more after a compaction by a fresh process
    with TokenTracker(path) as t:
        t.compact()
    _check(path, acked)
    # nothing was declared corrupt along the way
    assert not list(tmp_path.glob("*.corrupt-*"))
