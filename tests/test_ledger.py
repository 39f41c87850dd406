"""The on-disk ledger: the earlier format, corruption, torn tails, compaction, stale journals."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from conftest import file_digests, seed_file
from token_tracker import LedgerCorruptError, TokenTracker, TokenUsage

SONNET = "claude-sonnet-4.5"
OPUS = "claude-opus-4.6"


def _journal(path: Path) -> Path:
    return Path(f"{path}.journal")


def _snapshot_doc(path: Path) -> dict:
    return json.loads(path.read_bytes())


# -- the earlier tracker's file ---------------------------------------------------------------


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "multi-term" / "token_usage.json"
    path.parent.mkdir()
    shutil.copyfile(seed_file("original-token_usage.json"), path)
    return path


def _check_seed_totals(t: TokenTracker, extra_tokens: int = 0) -> None:
    research = t.get_session_usage("research-session-001")
    review = t.get_session_usage("review-7")
    assert research is not None and review is not None
    assert research.total_cost_usd == 0.02802
    assert research.total_usage == TokenUsage(2700, 1400, 400)
    assert research.request_count == 2
    assert research.model_name == SONNET
    assert research.created_at == 1771322400.5
    assert research.last_updated == 1771322990.25
    assert review.total_cost_usd == 0.069
    assert review.total_usage == TokenUsage(3000, 500, 1000)
    assert review.request_count == 1
    assert review.model_name == OPUS
    assert review.created_at == 1771323000.0


def test_legacy_ledger_loads_with_its_totals(legacy: Path) -> None:
    original = legacy.read_bytes()
    with TokenTracker(legacy) as t:
        _check_seed_totals(t)
        assert t.get_global_usage() == TokenUsage(5700, 1900, 1400)
        assert t.get_global_usage().total_tokens == 7600
        assert t.get_global_cost() == 0.09702
        report = t.export_usage_report()
        assert report["global_summary"]["session_count"] == 2
        assert report["global_summary"]["total_tokens"] == 7600
        assert report["global_summary"]["total_cost_usd"] == 0.09702
    backups = sorted(legacy.parent.glob("token_usage.json.v1-backup*"))
    assert [b.name for b in backups] == ["token_usage.json.v1-backup"]
    assert backups[0].read_bytes() == original
    # the snapshot itself is now the current schema, and still has the earlier keys
    doc = _snapshot_doc(legacy)
    assert doc["schema_version"] == 2
    assert doc["global_summary"]["total_tokens"] == 7600
    assert set(doc["sessions"]) == {"research-session-001", "review-7"}


def test_legacy_ledger_appends_and_reopens(legacy: Path) -> None:
    original = legacy.read_bytes()
    with TokenTracker(legacy) as t:
        t.track_request("research-session-001", SONNET, 1500, 800, 400)  # 0.01542
        t.track_request("new", OPUS, 1000, 0)  # 0.015
        research = t.get_session_usage("research-session-001")
        assert research is not None
        assert research.total_cost_usd == 0.04344
        assert research.request_count == 3
        assert t.get_global_cost() == 0.12744
    for _ in range(2):
        with TokenTracker(legacy) as t:
            research = t.get_session_usage("research-session-001")
            assert research is not None and research.total_cost_usd == 0.04344
            assert t.get_session_usage("review-7").total_cost_usd == 0.069  # type: ignore[union-attr]
            assert t.get_global_usage().total_tokens == 7600 + 2300 + 1000
            assert t.get_global_cost() == 0.12744
            t.compact()
    assert (legacy.parent / "token_usage.json.v1-backup").read_bytes() == original
    assert len(list(legacy.parent.glob("*.v1-backup*"))) == 1


# -- corruption -------------------------------------------------------------------------------


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
    journal = _journal(ledger_path)
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
    assert _snapshot_doc(ledger_path)["schema_version"] == 2
    truncated = snapshot[: len(snapshot) // 2]
    ledger_path.write_bytes(truncated)
    journal_bytes = _journal(ledger_path).read_bytes()

    with pytest.raises(LedgerCorruptError) as info:
        TokenTracker(ledger_path)
    assert str(ledger_path) in str(info.value)
    aside = list(ledger_path.parent.glob("token_usage.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == truncated
    assert _journal(ledger_path).read_bytes() == journal_bytes

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
    journal = _journal(ledger_path)
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
    assert _snapshot_doc(ledger_path)["ledger_stats"]["recovered_tail"] == 1


def test_torn_fragment_followed_by_a_record(ledger_path: Path) -> None:
    """A writer killed inside write() leaves a fragment; a live writer's record lands after it."""
    _filled(ledger_path, 5)
    journal = _journal(ledger_path)
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


# -- compaction -------------------------------------------------------------------------------


def test_many_compactions_keep_exact_totals(ledger_path: Path) -> None:
    n = 1500
    with TokenTracker(ledger_path, journal_max_bytes=4096) as t:
        for i in range(n):
            t.track_request(f"s{i % 7}", SONNET if i % 3 else OPUS, 10 + i % 5, 3, i % 2)
            if i == 700:
                assert t.reset_session_usage("s6")
        generation = _snapshot_doc(ledger_path)["journal_generation"]
        assert generation > 20, generation
        expected_sessions = {
            sid: (s.request_count, s.total_usage, s.total_cost_usd)
            for sid, s in t.get_all_sessions().items()
        }
        expected = t.get_global_usage()
    assert _journal(ledger_path).stat().st_size <= 4096 + 200
    assert sum(c for c, _, _ in expected_sessions.values()) == n - len(
        [i for i in range(701) if i % 7 == 6]
    )
    with TokenTracker(ledger_path) as again:
        assert again.get_global_usage() == expected
        assert again.get_global_usage().cost_usd == expected.cost_usd
        assert {
            sid: (s.request_count, s.total_usage, s.total_cost_usd)
            for sid, s in again.get_all_sessions().items()
        } == expected_sessions


def test_live_reader_follows_through_compactions(ledger_path: Path) -> None:
    with (
        TokenTracker(ledger_path, journal_max_bytes=4096) as writer,
        TokenTracker(ledger_path) as reader,
    ):
        input_total = 0
        for i in range(1, 1201):
            writer.track_request(f"s{i % 5}", SONNET, i, 1)
            input_total += i
            # read at varying lags: within a generation, one behind and several behind
            if i % 13 == 0 or i % 97 == 0:
                g = reader.get_global_usage()
                assert g == TokenUsage(input_total, i), i
                sessions = reader.get_all_sessions()
                assert sum(s.request_count for s in sessions.values()) == i
        assert _snapshot_doc(ledger_path)["journal_generation"] > 10
        assert (
            reader.get_global_usage() == writer.get_global_usage() == TokenUsage(input_total, 1200)
        )


def test_two_writers_compacting_see_each_other(ledger_path: Path) -> None:
    a = TokenTracker(ledger_path, journal_max_bytes=4096)
    b = TokenTracker(ledger_path, journal_max_bytes=4096)
    try:
        for i in range(600):
            (a if i % 2 else b).track_request("a" if i % 2 else "b", SONNET, 1, 1)
            if i % 50 == 0:
                assert a.get_global_usage() == b.get_global_usage() == TokenUsage(i + 1, i + 1)
        assert a.get_session_usage("a").request_count == 300  # type: ignore[union-attr]
        assert b.get_session_usage("b").request_count == 300  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()
    with TokenTracker(ledger_path) as t:
        assert t.get_global_usage() == TokenUsage(600, 600)


def test_stale_journal_after_crash_mid_compaction(ledger_path: Path) -> None:
    """Compaction wrote the snapshot, then died before replacing the journal."""
    with TokenTracker(ledger_path) as t:
        for i in range(30):
            t.track_request(f"s{i % 3}", SONNET, 100, 10)
        t.compact()  # generation 1 -> 2
        for i in range(30):
            t.track_request(f"s{i % 3}", SONNET, 100, 10)
        old_journal = _journal(ledger_path).read_bytes()  # generation 2, 30 records
        t.compact()  # generation 2 -> 3
        expected = t.get_global_usage()
    assert expected == TokenUsage(6000, 600)
    assert _snapshot_doc(ledger_path)["journal_generation"] == 3
    _journal(ledger_path).write_bytes(old_journal)  # as if the journal swap never happened
    for round_ in range(2):
        with TokenTracker(ledger_path) as t:
            assert t.get_global_usage() == expected
            assert t.get_all_sessions()["s0"].request_count == 20 + round_
            t.track_request("s0", SONNET, 100, 10)
            expected = expected + TokenUsage(100, 10)
            assert t.get_global_usage() == expected


def test_writer_appending_after_a_compaction_died(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compactor dies between writing the snapshot and swapping the journal while
    another process keeps appending: those acknowledged records must not be lost."""
    a = TokenTracker(ledger_path)
    b = TokenTracker(ledger_path)
    try:
        for _ in range(10):
            a.track_request("a", SONNET, 1, 1)

        class Killed(Exception):
            pass

        def die(generation: int) -> None:
            raise Killed

        monkeypatch.setattr(a._ledger, "_new_journal", die)
        with pytest.raises(Killed):
            a.compact()
        a.close()
        # b has not noticed anything and appends to the journal it holds
        for _ in range(5):
            b.track_request("b", SONNET, 1, 1)
        with TokenTracker(ledger_path) as fresh:
            assert fresh.get_session_usage("a").request_count == 10  # type: ignore[union-attr]
            b_session = fresh.get_session_usage("b")
            assert b_session is not None and b_session.request_count == 5
            fresh.track_request("c", SONNET, 1, 1)
        for _ in range(3):
            b.track_request("b", SONNET, 1, 1)
        assert b.get_global_usage() == TokenUsage(19, 19)
    finally:
        a.close()
        b.close()
    with TokenTracker(ledger_path) as t:
        assert t.get_global_usage() == TokenUsage(19, 19)


def test_lagging_compactor_keeps_the_lock(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer generations behind reloads while compacting; it must not drop the flock."""
    import fcntl
    import os

    lagging = TokenTracker(ledger_path, journal_max_bytes=4096)
    busy = TokenTracker(ledger_path, journal_max_bytes=4096)
    lost: list[str] = []
    try:
        for _ in range(300):  # several generations the lagging writer never reads
            busy.track_request("busy", SONNET, 1, 1)
        ledger = lagging._ledger
        real_catch_up = ledger.catch_up
        real_compact_locked = ledger._compact_locked
        compacting: list[bool] = []

        def compact_locked(force: bool) -> bool:
            compacting.append(True)
            try:
                return real_compact_locked(force)
            finally:
                compacting.pop()

        def checked_catch_up() -> None:
            real_catch_up()
            if compacting:  # inside compaction: the flock must still be held
                probe = os.open(ledger.lock_path, os.O_RDWR)
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    lost.append("another open file could take the compaction lock")
                    fcntl.flock(probe, fcntl.LOCK_UN)
                except BlockingIOError:
                    pass
                finally:
                    os.close(probe)

        monkeypatch.setattr(ledger, "catch_up", checked_catch_up)
        monkeypatch.setattr(ledger, "_compact_locked", compact_locked)
        assert lagging.compact() is None
        assert lost == []
        for _ in range(100):
            lagging.track_request("lagging", SONNET, 1, 1)
        assert lost == []
        assert busy.get_global_usage() == TokenUsage(400, 400)
    finally:
        lagging.close()
        busy.close()
