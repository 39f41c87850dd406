"""Catching up 100,000 records appended by another process (issue 3: <= 1 s).

A live ``TokenTracker`` is open and idle while a subprocess records 100,000
requests through its own ``TokenTracker`` on the same ledger. Timed: the live
tracker's next ``get_global_usage()``, which folds those records in. Baseline,
side by side: reading the same journal bytes with a plain file read and
``splitlines()``, the floor of any line-based follower.

Two rows: the writer with one big journal (pure incremental catch-up), and the
writer with default settings, so it compacts several times while the live
tracker waits and the live tracker has to follow the generations.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _harness import Config, Result, interleaved, spawn_writer, wait_all
from token_tracker import TokenTracker
from token_tracker.ledger import DEFAULT_JOURNAL_MAX_BYTES

RECORDS = 100_000
SESSIONS = 1_000
HUGE = 1 << 40


def catchup(cfg: Config) -> list[Result]:
    rounds = cfg.rounds(5, 3)
    with tempfile.TemporaryDirectory(prefix="tt-bench-") as d:
        floor_copy = Path(d) / "same-100k-records.jsonl"
        return [
            _row(Path(d), "one journal", HUGE, floor_copy, rounds),
            _row(
                Path(d),
                "default journal size, writer compacts",
                DEFAULT_JOURNAL_MAX_BYTES,
                floor_copy,
                rounds,
            ),
        ]


def _row(d: Path, label: str, max_bytes: int, floor_copy: Path, rounds: int) -> Result:
    """One row; the one-journal row also saves the 100k records' bytes to ``floor_copy``."""
    path = d / f"ledger-{max_bytes}.json"
    journal = Path(str(path) + ".journal")
    live = TokenTracker(path)
    live.get_global_usage()
    span = [0, 0]  # journal byte range the last writer appended (one-journal case)
    generations: list[int] = []

    def setup() -> None:
        start = journal.stat().st_size
        first = live._ledger.state.records
        wait_all([spawn_writer(path, RECORDS, SESSIONS, first=first, max_bytes=max_bytes)])
        span[:] = [start, journal.stat().st_size]

    def ours() -> float:
        before = live._ledger.state.records
        gen = live._ledger._generation
        t0 = time.perf_counter_ns()
        live.get_global_usage()
        elapsed = time.perf_counter_ns() - t0
        if live._ledger.state.records - before != RECORDS:
            raise RuntimeError("the live tracker did not see exactly the new records")
        generations.append(live._ledger._generation - gen)
        return elapsed

    def base_same_journal() -> float:
        t0 = time.perf_counter_ns()
        with open(journal, "rb") as f:
            f.seek(span[0])
            f.read(span[1] - span[0]).splitlines()
        return time.perf_counter_ns() - t0

    def base_copy() -> float:  # the same 100,000 records' bytes, kept from the first row
        t0 = time.perf_counter_ns()
        with open(floor_copy, "rb") as f:
            f.read().splitlines()
        return time.perf_counter_ns() - t0

    one_journal = max_bytes == HUGE
    base = base_same_journal if one_journal else base_copy
    try:
        ours_ns, base_ns = interleaved(ours, base, rounds=rounds, warmup=1, setup=setup)
    finally:
        live.close()
    if one_journal:
        with open(journal, "rb") as f:
            f.seek(span[0])
            floor_copy.write_bytes(f.read(span[1] - span[0]))
    note = f"{RECORDS:,} records over {SESSIONS:,} sessions, {floor_copy.stat().st_size:,} bytes"
    if not one_journal:
        note += (
            f"; the writer moved the journal on by {min(generations)}-{max(generations)} "
            "generations per round"
        )
    return Result(
        f"catch-up 100k records from another process ({label})",
        "get_global_usage()",
        "read + splitlines",
        ours_ns,
        base_ns,
        "per catch-up",
        max_ours_ns=1e9,
        target="ours <= 1 s",
        notes=[note],
    )
