"""Verify a ledger without changing it (``token-tracker check``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from . import journal
from .pricing import PriceTable
from .state import LedgerState, SnapshotError


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
            state, snapshot_generation, schema = LedgerState.from_document(json.loads(raw), prices)
        except (ValueError, SnapshotError, RecursionError) as exc:
            report.problems.append(f"{base}: snapshot is damaged: {exc}")
            return report
        report.notes.append(
            f"{base}: snapshot schema {schema}, {len(state.sessions)} sessions, "
            f"{state.records} records"
        )
    journal_path = base + ".journal"
    data = _read(journal_path)
    if data is None:
        report.notes.append(f"{journal_path}: no journal")
        return report
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline
    records = 0
    for number, line in enumerate(lines, 1):
        rec = journal.decode(line)
        if rec is None:
            if journal.salvage(line) is not None:
                report.notes.append(f"{journal_path}:{number}: torn fragment before a valid record")
                rec = journal.salvage(line)[1]  # type: ignore[index]
            else:
                report.problems.append(f"{journal_path}:{number}: record fails its checksum")
                continue
        if number == 1:
            if rec[0] != "h":
                report.problems.append(f"{journal_path}:1: missing journal header")
            elif snapshot_generation and rec[2] not in (
                snapshot_generation,
                snapshot_generation - 1,
            ):
                report.problems.append(
                    f"{journal_path}: generation {rec[2]} does not continue the snapshot "
                    f"(generation {snapshot_generation})"
                )
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
