"""Run the benchmarks, each side by side with its baseline, and write results.md.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME[,NAME...]]

Every benchmark is a function ``(Config) -> list[Result]`` in its own module;
``BENCHMARKS`` below is the registry, so adding one is one import and one entry.
Benchmarks are not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bench_catchup
import bench_reopen
import bench_scrape
import bench_track
from _harness import Config, Result, environment, table

BENCHMARKS: dict[str, Callable[[Config], list[Result]]] = {
    # issue 2: the core tracker
    "track_request": bench_track.track_request,
    "vs_rewrite": bench_track.vs_rewrite,
    "reopen": bench_reopen.reopen,
    # issue 3: metrics
    "catchup": bench_catchup.catchup,
    "scrape": bench_scrape.scrape,
}

RESULTS = Path(__file__).with_name("results.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, same workloads")
    parser.add_argument(
        "--only", metavar="NAME", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(
                f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
            )
    cfg = Config(quick=args.quick)

    results: list[Result] = []
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.extend(BENCHMARKS[name](cfg))
        print(f"  {name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started

    command = "benchmarks/run.py" + (" --quick" if args.quick else "")
    command += f" --only {','.join(names)}" if args.only else ""
    text = (
        "# Benchmark results\n\n"
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')}; {environment()}; "
        f"took {total:.0f} s. Medians of interleaved rounds after a warmup; "
        "ratio = ours / baseline (below 1: ours is faster).\n\n" + table(results)
    )
    print(text)
    RESULTS.write_text(text)
    missed = [r.name for r in results if r.passed is False]
    if missed:
        print(f"targets missed: {'; '.join(missed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
