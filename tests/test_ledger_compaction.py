"""Ledger compaction: exact totals, live readers and writers across it, stale journals."""

from __future__ import annotations

from pathlib import Path

import pytest

from _ledger_helpers import journal_path, snapshot_doc
from _models import OPUS, SONNET
from token_tracker import TokenTracker, TokenUsage


def test_many_compactions_keep_exact_totals(ledger_path: Path) -> None:
    n = 1500
    with TokenTracker(ledger_path, journal_max_bytes=4096) as t:
        for i in range(n):
            t.track_request(f"s{i % 7}", SONNET if i % 3 else OPUS, 10 + i % 5, 3, i % 2)
            if i == 700:
                assert t.reset_session_usage("s6")
        generation = snapshot_doc(ledger_path)["journal_generation"]
        assert generation > 20, generation
        expected_sessions = {
            sid: (s.request_count, s.total_usage, s.total_cost_usd)
            for sid, s in t.get_all_sessions().items()
        }
        expected = t.get_global_usage()
    assert journal_path(ledger_path).stat().st_size <= 4096 + 200
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
        assert snapshot_doc(ledger_path)["journal_generation"] > 10
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
        old_journal = journal_path(ledger_path).read_bytes()  # generation 2, 30 records
        t.compact()  # generation 2 -> 3
        expected = t.get_global_usage()
    assert expected == TokenUsage(6000, 600)
    assert snapshot_doc(ledger_path)["journal_generation"] == 3
    journal_path(ledger_path).write_bytes(old_journal)  # as if the journal swap never happened
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
