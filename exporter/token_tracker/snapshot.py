"""Reading and writing the snapshot file (its format is documented in ``state``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

from .errors import LedgerError
from .files import atomic_write, open_private, read_all, set_aside_corrupt, unique_name
from .pricing import PriceTable
from .state import LedgerState, Snapshot

log = logging.getLogger("token_tracker.ledger")


def parse_snapshot(raw: bytes, prices: PriceTable) -> Snapshot:
    """Decode snapshot bytes; raises ``ValueError`` (``SnapshotError``) when damaged."""
    try:
        return LedgerState.from_document(json.loads(raw), prices)
    except RecursionError:  # absurdly nested JSON is damage too, not a crash
        raise ValueError("nested too deeply") from None


def read_snapshot(path: str, prices: PriceTable) -> Snapshot | None:
    """The snapshot at ``path`` (None if there is none).

    A damaged one is set aside and ``LedgerCorruptError`` raised; the earlier
    tracker's format is migrated, keeping the original as ``.v1-backup``.
    """
    try:
        fd = open_private(path, os.O_RDONLY, "ledger")
    except FileNotFoundError:
        return None
    try:
        raw = read_all(fd)
    except OSError as exc:
        raise LedgerError(f"ledger {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        snapshot = parse_snapshot(raw, prices)
    except ValueError as exc:
        raise set_aside_corrupt(path, f"not a valid ledger snapshot: {exc}") from None
    if snapshot.schema == 1:
        _migrate_v1(path, snapshot.state, prices)
    return snapshot


def write_snapshot(
    path: str,
    state: LedgerState,
    generation: int,
    prices: PriceTable,
    folded_bytes: int | None = None,
) -> None:
    """Replace the snapshot atomically."""
    doc = state.to_document(generation, time.time(), prices, folded_bytes)
    atomic_write(path, json.dumps(doc, ensure_ascii=False).encode())


def _migrate_v1(path: str, state: LedgerState, prices: PriceTable) -> None:
    """Keep the earlier tracker's file as a backup, then write the current schema."""
    backup = unique_name(path + ".v1-backup")
    try:
        os.link(path, backup)
    except OSError:  # no hard links here: copy, byte for byte
        shutil.copyfile(path, backup, follow_symlinks=False)
    write_snapshot(path, state, 1, prices)
    log.info("migrated earlier-format ledger %s; the original is kept as %s", path, backup)
