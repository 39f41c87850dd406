"""Shared machinery for the benchmarks: side-by-side timing, results and the table.

Every benchmark measures *our* side and a *baseline* side in the same run, in
interleaved rounds (the order alternates each round so neither side always runs
on a warmer cache), after a warmup, and reports the median of the rounds. Times
come from ``time.perf_counter_ns``. A result's ratio is always ours / baseline,
so below 1 means we are faster.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: A side takes no arguments, does one sample's work, and returns its time in
#: nanoseconds per unit (per call, per request, per open): setup it does not
#: want measured stays outside its own perf_counter_ns pair.
Side = Callable[[], float]


@dataclass(frozen=True)
class Config:
    """How hard to run: ``quick`` trades repeats for time, never the workload size."""

    quick: bool = False

    def rounds(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Result:
    """One row of the table."""

    name: str
    ours_label: str
    base_label: str
    ours_ns: list[float]
    base_ns: list[float]
    unit: str  # "per call", "per request", "per open", ...
    max_ratio: float | None = None  # pass when ours / baseline <= max_ratio
    max_ours_ns: float | None = None  # pass when ours <= this (an absolute target)
    target: str = ""
    notes: list[str] = field(default_factory=list)
    stat: str = "median"  # or "mean", for amortised costs

    def _agg(self, samples: list[float]) -> float:
        return statistics.mean(samples) if self.stat == "mean" else statistics.median(samples)

    @property
    def ours(self) -> float:
        return self._agg(self.ours_ns)

    @property
    def base(self) -> float:
        return self._agg(self.base_ns)

    @property
    def ratio(self) -> float:
        return self.ours / self.base

    @property
    def passed(self) -> bool | None:
        checks = []
        if self.max_ratio is not None:
            checks.append(self.ratio <= self.max_ratio)
        if self.max_ours_ns is not None:
            checks.append(self.ours <= self.max_ours_ns)
        return all(checks) if checks else None


def interleaved(
    ours: Side,
    base: Side,
    rounds: int,
    warmup: int = 1,
    setup: Callable[[], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Run both sides ``warmup`` times untimed, then ``rounds`` timed rounds, alternating order.

    ``setup``, when given, runs untimed before every round (warmup rounds included).
    """
    for _ in range(warmup):
        if setup:
            setup()
        ours()
        base()
    ours_ns: list[float] = []
    base_ns: list[float] = []
    for r in range(rounds):
        if setup:
            setup()
        if r % 2 == 0:
            ours_ns.append(ours())
            base_ns.append(base())
        else:
            base_ns.append(base())
            ours_ns.append(ours())
    return ours_ns, base_ns


def per_call(fn: Callable[[int], None], n: int) -> Side:
    """A side timing ``fn(n)`` (a loop of ``n`` calls) and returning ns per call."""

    def side() -> float:
        t0 = time.perf_counter_ns()
        fn(n)
        return (time.perf_counter_ns() - t0) / n

    return side


# -- writing through the package from another process ---------------------------------

_WRITER = r"""
import sys
from token_tracker import TokenTracker
path, n, sessions, first, max_bytes = sys.argv[1], *map(int, sys.argv[2:6])
t = TokenTracker(path, journal_max_bytes=max_bytes)
track = t.track_request
sids = [f"bench-session-{k:05d}" for k in range(sessions)]
models = ("claude-sonnet-4.5", "claude-haiku-4.5", "claude-opus-4.6")
for k in range(first, first + n):
    track(sids[k % sessions], models[k % 3], 1000 + k % 97, 200 + k % 31, k % 500)
t.close()
"""


def spawn_writer(
    path: str | os.PathLike[str], n: int, sessions: int, first: int = 0, max_bytes: int = 4 << 20
) -> subprocess.Popen[bytes]:
    """Start a process that records ``n`` requests through ``TokenTracker`` on ``path``."""
    args = [str(path), str(n), str(sessions), str(first), str(max_bytes)]
    return subprocess.Popen([sys.executable, "-c", _WRITER, *args])


def wait_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"writer process exited with {p.returncode}")


# -- the table ----------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.3f} s"


def fmt_ratio(r: float) -> str:
    if r >= 0.1:
        return f"{r:.2f}x"
    return f"{r:.2g}x (= {1 / r:,.0f}x faster)"


def spread(samples: list[float]) -> str:
    lo, hi = min(samples), max(samples)
    return f"{fmt_ns(lo)}-{fmt_ns(hi)}"


def table(results: Sequence[Result]) -> str:
    head = (
        "| benchmark | ours | baseline | ours / baseline | target | result |\n"
        "|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        verdict = {True: "**pass**", False: "**MISS**", None: "info"}[r.passed]
        rows.append(
            f"| {r.name} ({r.stat} {r.unit}, n={len(r.ours_ns)}) "
            f"| {r.ours_label}: {fmt_ns(r.ours)} "
            f"| {r.base_label}: {fmt_ns(r.base)} "
            f"| {fmt_ratio(r.ratio)} | {r.target} | {verdict} |"
        )
    notes = []
    for r in results:
        notes.append(
            f"- **{r.name}**: ours {spread(r.ours_ns)}, baseline {spread(r.base_ns)} "
            "(min-max over rounds)"
        )
        notes.extend(f"  - {n}" for n in r.notes)
    return head + "\n".join(rows) + "\n\nSpread and notes:\n\n" + "\n".join(notes) + "\n"


def environment() -> str:
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; temp dirs under {Path(os.environ.get('TMPDIR', '/tmp'))}"
    )
