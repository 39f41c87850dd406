"""Verify a ledger without changing it (``token-tracker check``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import journal
from .pricing import PriceTable
from .snapshot import parse_snapshot


@dataclass
class CheckReport:
    """What a check found: ``problems`` make it fail, ``notes`` inform."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def check_ledger(path: str | os.PathLike[str], prices: PriceTable) -> CheckReport:
    """Read the snapshot and every journal record; report damage, modify nothing."""
    report = CheckReport()
    base = os.path.abspath(os.fspath(path))
    snapshot_generation = 0
    raw = _read(base)
    if raw is None:
        report.notes.append(f"{base}: no snapshot (a new ledger, or one never compacted)")
    else:
        try:
            snapshot = parse_snapshot(raw, prices)
        except ValueError as exc:
            report.problems.append(f"{base}: snapshot is damaged: {exc}")
            return report
        snapshot_generation = snapshot.generation
        report.notes.append(
            f"{base}: snapshot schema {snapshot.schema}, {len(snapshot.state.sessions)} "
            f"sessions, {snapshot.state.records} records"
        )
    journal_path = base + ".journal"
    data = _read(journal_path)
    if data is None:
        report.notes.append(f"{journal_path}: no journal")
        return report
    generation = journal.header_generation(data)
    if generation is None:
        report.problems.append(f"{journal_path}:1: missing or damaged journal header")
    elif snapshot_generation and generation not in (snapshot_generation, snapshot_generation - 1):
        report.problems.append(
            f"{journal_path}: generation {generation} does not continue the snapshot "
            f"(generation {snapshot_generation})"
        )
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline
    records = 0
    for number, line in enumerate(lines[1:], 2):
        rec = journal.decode(line)
        if rec is None:
            found = journal.salvage(line)
            if found is None:
                report.problems.append(f"{journal_path}:{number}: record fails its checksum")
                continue
            report.notes.append(f"{journal_path}:{number}: torn fragment before a valid record")
            rec = found[1]
        records += rec[0] == "r"
    if tail:
        report.notes.append(
            f"{journal_path}: ends in a torn {len(tail)}-byte record; the next open cuts it "
            "off and keeps it aside"
        )
    report.notes.append(f"{journal_path}: {records} request records")
    if not report.problems:
        report.notes.append("ok")
    return report
