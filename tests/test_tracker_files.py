"""Where the TokenTracker ledger lives, and its files: permissions and symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from _models import SONNET
from token_tracker import LedgerError, TokenTracker, default_ledger_path

# -- where the ledger lives -----------------------------------------------------------------


def _ledger_files_exist(path: Path) -> bool:
    """The ledger is the snapshot at ``path`` plus ``path.journal`` beside it."""
    return Path(f"{path}.journal").is_file() or path.is_file()


def _reopened_tokens(path: Path) -> int:
    with TokenTracker(path) as t:
        return t.get_global_usage().total_tokens


def test_default_path_is_under_home(home: Path) -> None:
    expected = home / ".multi-term" / "token_usage.json"
    assert default_ledger_path() == expected
    with TokenTracker() as t:
        assert t.persistence_path == expected
        t.track_request("s", SONNET, 1, 1)
    assert _ledger_files_exist(expected)
    assert _reopened_tokens(expected) == 2
    assert stat.S_IMODE(expected.parent.stat().st_mode) == 0o700


def test_env_var_replaces_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    env_path = tmp_path / "env" / "ledger.json"
    monkeypatch.setenv("TOKEN_TRACKER_LEDGER", str(env_path))
    with TokenTracker() as t:
        assert t.persistence_path == env_path
        t.track_request("s", SONNET, 1, 1)
    assert _ledger_files_exist(env_path)
    assert _reopened_tokens(env_path) == 2
    assert not (home / ".multi-term").exists()


def test_explicit_argument_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("TOKEN_TRACKER_LEDGER", str(tmp_path / "env.json"))
    explicit = tmp_path / "explicit.json"
    with TokenTracker(persistence_path=str(explicit)) as t:
        t.track_request("s", SONNET, 1, 1)
    assert _ledger_files_exist(explicit)
    assert _reopened_tokens(explicit) == 2
    assert not list(tmp_path.glob("env.json*"))
    assert not (home / ".multi-term").exists()


# -- files --------------------------------------------------------------------------------------


def test_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "deeper" / "ledger.json"
        with TokenTracker(path, journal_max_bytes=2048) as t:
            for i in range(50):
                t.track_request(f"s{i}", SONNET, 1, 1)
            t.compact()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    created = [p for p in path.parent.iterdir() if p.is_file()]
    assert {p.name for p in created} >= {"ledger.json", "ledger.json.journal"}
    for p in created:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


@pytest.mark.parametrize("which", ["ledger.json", "ledger.json.journal", "ledger.json.lock"])
def test_symlink_at_ledger_paths_is_refused(tmp_path: Path, which: str) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    (directory / which).symlink_to(target)
    with pytest.raises(LedgerError, match="symlink"), TokenTracker(directory / "ledger.json") as t:
        t.track_request("s", SONNET, 1, 1)
    assert target.read_bytes() == b"precious"
    assert (directory / which).is_symlink()


def test_dangling_symlink_is_not_followed(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    target = tmp_path / "would-be-created"
    (directory / "ledger.json.journal").symlink_to(target)
    with pytest.raises(LedgerError), TokenTracker(directory / "ledger.json") as t:
        t.track_request("s", SONNET, 1, 1)
    assert not target.exists()
