"""Reopening a ledger of 1,000,000 requests over 10,000 sessions (issue 2: <= 1 s).

The ledger is produced by the package itself: two writer processes record
500,000 requests each through ``TokenTracker.track_request`` (a big
``journal_max_bytes`` so they do not compact along the way), then
``TokenTracker.compact()`` folds the journal into the snapshot.

Timed: ``TokenTracker(path)`` + ``get_global_usage()``. Baseline, side by side:
``json.load`` of the same snapshot file alone, the floor of any JSON snapshot.
A second row times the worst case a user meets with the default settings: the
same snapshot plus a journal just under the default compaction threshold.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from _harness import Config, Result, interleaved, spawn_writer, wait_all
from token_tracker import TokenTracker
from token_tracker.ledger import DEFAULT_JOURNAL_MAX_BYTES

REQUESTS = 1_000_000
SESSIONS = 10_000
WRITERS = 2
HUGE = 1 << 40


def build(path: Path) -> tuple[float, float]:
    """Write the 1M-request ledger; returns (seconds writing, seconds opening+compacting)."""
    t0 = time.perf_counter()
    per = REQUESTS // WRITERS
    wait_all(
        [spawn_writer(path, per, SESSIONS, first=w * per, max_bytes=HUGE) for w in range(WRITERS)]
    )
    t1 = time.perf_counter()
    with TokenTracker(path, journal_max_bytes=HUGE) as t:
        t.compact()
        state = t._ledger.state
        if state.records != REQUESTS or len(state.sessions) != SESSIONS:
            raise RuntimeError(f"built {state.records} records / {len(state.sessions)} sessions")
    return t1 - t0, time.perf_counter() - t1


def reopen(cfg: Config) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="tt-bench-") as d:
        path = Path(d) / "ledger.json"
        journal = Path(str(path) + ".journal")
        writing, folding = build(path)
        snap_size = path.stat().st_size

        def ours() -> float:
            t0 = time.perf_counter_ns()
            t = TokenTracker(path)
            t.get_global_usage()
            elapsed = time.perf_counter_ns() - t0
            t.close()
            return elapsed

        def base() -> float:
            t0 = time.perf_counter_ns()
            with open(path, "rb") as f:
                json.load(f)
            return time.perf_counter_ns() - t0

        rounds = cfg.rounds(9, 5)
        ours1, base1 = interleaved(ours, base, rounds=rounds, warmup=1)

        # Fill the journal to just under the default compaction threshold.
        with TokenTracker(path) as t:
            track = t.track_request
            k = 0
            while journal.stat().st_size < DEFAULT_JOURNAL_MAX_BYTES * 0.97:
                for _ in range(1000):
                    track(f"bench-session-{k % SESSIONS:05d}", "claude-sonnet-4.5", 1000, 200, 0)
                    k += 1
        if path.stat().st_size != snap_size:
            raise RuntimeError("the journal fill compacted; the second row would be wrong")
        tail_records = k

        def base_both() -> float:
            t0 = time.perf_counter_ns()
            with open(path, "rb") as f:
                json.load(f)
            with open(journal, "rb") as f:
                f.read().splitlines()
            return time.perf_counter_ns() - t0

        ours2, base2 = interleaved(ours, base_both, rounds=rounds, warmup=1)
        journal_size = journal.stat().st_size

    build_note = (
        f"built by {WRITERS} writer processes in {writing:.1f} s, opened+compacted in "
        f"{folding:.1f} s; snapshot {snap_size:,} bytes"
    )
    return [
        Result(
            "reopen 1M requests / 10k sessions (compacted)",
            "TokenTracker()+get_global_usage()",
            "json.load(snapshot)",
            ours1,
            base1,
            "per open",
            max_ours_ns=1e9,
            target="ours <= 1 s",
            notes=[build_note],
        ),
        Result(
            "reopen, same + journal near default compaction size",
            "TokenTracker()+get_global_usage()",
            "json.load + journal read/splitlines",
            ours2,
            base2,
            "per open",
            max_ours_ns=1e9,
            target="ours <= 1 s",
            notes=[
                f"journal {journal_size:,} bytes ({tail_records:,} records), threshold "
                f"{DEFAULT_JOURNAL_MAX_BYTES:,}"
            ],
        ),
    ]
