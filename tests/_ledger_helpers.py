"""The ledger's files as tests see them: the journal beside the snapshot, the snapshot's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def journal_path(path: Path) -> Path:
    """The journal of the ledger whose snapshot is ``path``."""
    return Path(f"{path}.journal")


def snapshot_doc(path: Path) -> dict[str, Any]:
    """The snapshot at ``path``, parsed."""
    return json.loads(path.read_bytes())
