"""A damaged ledger: corrupt journals and snapshots are refused and kept, torn tails cut."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from _ledger_helpers import journal_path, snapshot_doc
from _models import SONNET
from conftest import file_digests
from token_tracker import LedgerCorruptError, TokenTracker, TokenUsage


def _filled(path: Path, n: int = 20) -> None:
    with TokenTracker(path) as t:
        for i in range(n):
            t.track_request(f"s{i % 3}", SONNET, 100 + i, 10)


@pytest.mark.parametrize(
    "damage",
    ["garbage-line", "flipped-byte", "cut-line", "bad-json-good-crc-shape"],
)
def test_garbage_in_the_middle_of_the_journal(ledger_path: Path, damage: str) -> None:
    _filled(ledger_path)
    journal = journal_path(ledger_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    mid = len(lines) // 2
    if damage == "garbage-line":
        lines.insert(mid, b"this is not a record\n")
    elif damage == "flipped-byte":
        line = bytearray(lines[mid])
        line[20] ^= 0x01
        lines[mid] = bytes(line)
    elif damage == "cut-line":
        lines[mid] = lines[mid][: len(lines[mid]) // 2] + b"\n"
    else:
        lines[mid] = b'["r",1.0,"s","m",1,1,0,0,0,0,0,"00000000"]\n'
    damaged = b"".join(lines)
    journal.write_bytes(damaged)
    before = file_digests(ledger_path.parent)

    with pytest.raises(LedgerCorruptError) as info:
        TokenTracker(ledger_path)
    message = str(info.value)
    assert str(journal) in message
    aside = list(ledger_path.parent.glob("token_usage.json.journal.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == damaged
    assert info.value.preserved_as == str(aside[0])
    assert str(aside[0]) in message
    # nothing else was touched or overwritten
    after = file_digests(ledger_path.parent)
    before_rest = {k: v for k, v in before.items() if k != journal.name}
    assert {k: v for k, v in after.items() if k in before_rest} == before_rest
    assert after[aside[0].name] == before[journal.name]


def test_truncated_snapshot(ledger_path: Path) -> None:
    _filled(ledger_path)
    with TokenTracker(ledger_path) as t:
        t.compact()
        t.track_request("after", SONNET, 1, 1)
    snapshot = ledger_path.read_bytes()
    assert snapshot_doc(ledger_path)["schema_version"] == 2
    truncated = snapshot[: len(snapshot) // 2]
    ledger_path.write_bytes(truncated)
    journal_bytes = journal_path(ledger_path).read_bytes()

    with pytest.raises(LedgerCorruptError) as info:
        TokenTracker(ledger_path)
    assert str(ledger_path) in str(info.value)
    aside = list(ledger_path.parent.glob("token_usage.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == truncated
    assert journal_path(ledger_path).read_bytes() == journal_bytes

    # without its snapshot the journal is not silently taken for the whole ledger
    digests = file_digests(ledger_path.parent)
    with pytest.raises(LedgerCorruptError):
        TokenTracker(ledger_path)
    assert file_digests(ledger_path.parent) == digests

    # putting the snapshot back restores everything
    shutil.copyfile(aside[0], ledger_path)
    ledger_path.write_bytes(snapshot)
    with TokenTracker(ledger_path) as t:
        assert t.get_global_usage().input_tokens == sum(100 + i for i in range(20)) + 1


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"schema_version": 99}', b"\xff\xfe"])
def test_unreadable_snapshot_is_preserved(ledger_path: Path, content: bytes) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(content)
    with pytest.raises(LedgerCorruptError) as info:
        TokenTracker(ledger_path)
    assert str(ledger_path) in str(info.value)
    aside = list(ledger_path.parent.glob("token_usage.json.corrupt-*"))
    assert [a.read_bytes() for a in aside] == [content]


def test_torn_tail_is_cut_kept_and_logged(
    ledger_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _filled(ledger_path, 10)
    journal = journal_path(ledger_path)
    good = journal.read_bytes()
    last = good.splitlines(keepends=True)[-1]
    torn = last[: len(last) // 2]
    with journal.open("ab") as f:
        f.write(torn)
    caplog.set_level(logging.WARNING)
    with TokenTracker(ledger_path) as t:
        assert t.get_global_usage() == TokenUsage(sum(100 + i for i in range(10)), 100)
        assert t._ledger.state.recovered_tail == 1
        t.track_request("later", SONNET, 5, 5)
    kept = list(ledger_path.parent.glob("token_usage.json.journal.torn-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == torn
    assert any("torn" in r.getMessage() for r in caplog.records)
    # the journal now holds the acknowledged records, a torn-tail note and the new one
    assert journal.read_bytes().startswith(good)
    with TokenTracker(ledger_path) as t:
        assert t.get_global_usage() == TokenUsage(sum(100 + i for i in range(10)) + 5, 105)
        assert t._ledger.state.recovered_tail == 1
        t.compact()
    with TokenTracker(ledger_path) as t:
        assert t._ledger.state.recovered_tail == 1
        assert t.get_global_usage().output_tokens == 105
    assert snapshot_doc(ledger_path)["ledger_stats"]["recovered_tail"] == 1


def test_torn_fragment_followed_by_a_record(ledger_path: Path) -> None:
    """A writer killed inside write() leaves a fragment; a live writer's record lands after it."""
    _filled(ledger_path, 5)
    journal = journal_path(ledger_path)
    fragment = journal.read_bytes().splitlines(keepends=True)[-1][:17]
    with TokenTracker(ledger_path) as writer, TokenTracker(ledger_path) as live_reader:
        with journal.open("ab") as f:
            f.write(fragment)
        writer.track_request("y", SONNET, 2, 2)
        # the record is on the fragment's line: both a live and a fresh reader find it
        y = live_reader.get_session_usage("y")
        assert y is not None and y.total_usage == TokenUsage(2, 2)
        with TokenTracker(ledger_path) as fresh:
            y = fresh.get_session_usage("y")
            assert y is not None and y.total_usage == TokenUsage(2, 2)
            assert fresh.get_global_usage().output_tokens == 52
            assert fresh._ledger.state.recovered_tail == 1
