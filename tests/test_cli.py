"""The ``token-tracker`` command: track, status, report, check; exit codes and error lines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, file_digests, subprocess_env
from token_tracker import TokenTracker, __version__, format_usage_compact
from token_tracker.cli import main, parse_duration

SONNET = "claude-sonnet-4.5"
HAIKU = "claude-haiku-4.5"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m token_tracker ARGS`` in a child process."""
    return subprocess.run(
        [PYTHON, "-m", "token_tracker", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


# -- the commands, end to end in child processes --------------------------------------


def test_track_status_report_check(ledger_path: Path) -> None:
    ledger = str(ledger_path)
    r = run("track", "s1", SONNET, "1500", "800", "--cached", "400", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("recorded 2300 tokens, $")
    assert r.stderr == ""
    r = run("track", "s2", HAIKU, "100", "50", "--cache-creation", "20", "--ledger", ledger)
    assert r.returncode == 0, r.stderr

    with TokenTracker(ledger_path) as t:
        s1 = t.get_session_usage("s1")
        s2 = t.get_session_usage("s2")
    assert s1 is not None and s2 is not None
    assert (s1.total_usage.input_tokens, s1.total_usage.cached_tokens) == (1500, 400)
    assert s2.total_usage.cache_creation_tokens == 20

    r = run("status", "s1", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    assert r.stdout == format_usage_compact(s1.total_usage, SONNET) + "\n"
    assert r.stdout == "2.3K tok (400 cached) $0.02\n"  # $0.01542

    r = run("report", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("SESSION")
    assert any(line.startswith("s1 ") and SONNET in line for line in lines)
    assert any(line.startswith("s2 ") and HAIKU in line for line in lines)
    assert lines[-1].startswith("TOTAL: 2 sessions")

    r = run("report", "--json", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report["sessions"]) == {"s1", "s2"}
    assert report["global_summary"]["input_tokens"] == 1600
    assert report["global_summary"]["request_count"] == 2
    assert report["sessions"]["s1"]["total_usage"]["cached_tokens"] == 400

    r = run("check", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "ok"
    assert "2 request records" in r.stdout


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"token-tracker {__version__}"


def test_status_unknown_session_exits_1(ledger_path: Path) -> None:
    run("track", "known", SONNET, "1", "1", "--ledger", str(ledger_path))
    r = run("status", "nope", "--ledger", str(ledger_path))
    assert r.returncode == 1
    assert r.stdout == ""
    assert "nope" in assert_one_error_line(r.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--session-ttl", "5x"],
        ["serve", "--session-ttl", "-1h"],
        ["serve", "--max-sessions", "-3"],
        ["serve", "--budget-day", "lots"],
        ["serve", "--budget-session", "inf"],
        ["serve", "--web.listen-address", "not-an-address"],
        ["track", "s", SONNET, "-5", "1"],
        ["track", "s", SONNET, "5", "x"],
        ["track", "s", SONNET, "5", "1", "--cached", "-1"],
        ["track", "s", SONNET],
        ["status"],
        ["no-such-command"],
        [],
    ],
)
def test_usage_errors_exit_2(ledger_path: Path, args: list[str]) -> None:
    r = (
        run(*args, "--ledger", str(ledger_path))
        if args and args[0] != "no-such-command"
        else run(*args)
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "error" in r.stderr
    assert not ledger_path.exists()  # nothing was recorded


def test_usage_errors_in_process(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["track", "s", SONNET, "-5", "1", "--ledger", str(ledger_path)])
    assert exc.value.code == 2
    assert "expected an integer >= 0" in capsys.readouterr().err


def test_value_error_from_the_tracker_is_one_line(ledger_path: Path) -> None:
    # cached + cache creation larger than input: the tracker refuses it.
    r = run("track", "s", SONNET, "10", "1", "--cached", "20", "--ledger", str(ledger_path))
    assert r.returncode == 1
    assert "cached_tokens" in assert_one_error_line(r.stderr)


def test_corrupt_ledger_is_one_line_naming_the_file(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_text('{"schema_version": 2, "sessions": ')
    for args in (["status", "s"], ["report"], ["track", "s", SONNET, "1", "1"]):
        if not ledger_path.exists():  # the first command moved the damaged file aside
            ledger_path.write_text('{"schema_version": 2, "sessions": ')
        r = run(*args, "--ledger", str(ledger_path))
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        line = assert_one_error_line(r.stderr)
        assert line.startswith("token-tracker: ")
        assert str(ledger_path) in line


def test_unreadable_ledger_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run("status", "s", "--ledger", str(blocker / "ledger.json"))
    assert r.returncode == 1
    assert str(blocker) in assert_one_error_line(r.stderr)


def test_bad_pricing_file_is_one_line(ledger_path: Path, tmp_path: Path) -> None:
    pricing = tmp_path / "prices.toml"
    pricing.write_text("[models.x]\ninput = 'cheap'\n")
    r = run("status", "s", "--ledger", str(ledger_path), "--pricing", str(pricing))
    assert r.returncode == 1
    assert_one_error_line(r.stderr)


# -- check: exits non-zero on damage, names the file, and changes nothing ----------------


def _ledger_with_records(path: Path, n: int = 3) -> None:
    with TokenTracker(path) as t:
        for i in range(n):
            t.track_request(f"s{i}", SONNET, 100 + i, 10)


def test_check_corrupt_journal_leaves_it_byte_identical(ledger_path: Path) -> None:
    _ledger_with_records(ledger_path)
    journal = Path(f"{ledger_path}.journal")
    lines = journal.read_bytes().split(b"\n")
    assert b",101,10," in lines[2]
    lines[2] = lines[2].replace(b",101,10,", b",901,10,")  # a flipped digit: bad checksum
    journal.write_bytes(b"\n".join(lines))
    before = file_digests(ledger_path.parent)

    r = run("check", "--ledger", str(ledger_path))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert str(journal) in r.stderr
    assert "checksum" in r.stderr
    assert file_digests(ledger_path.parent) == before
    assert not [p for p in ledger_path.parent.iterdir() if ".corrupt-" in p.name]


def test_check_damaged_journal_header(ledger_path: Path) -> None:
    _ledger_with_records(ledger_path)
    journal = Path(f"{ledger_path}.journal")
    journal.write_bytes(b"X" + journal.read_bytes()[1:])
    before = file_digests(ledger_path.parent)
    r = run("check", "--ledger", str(ledger_path))
    assert r.returncode != 0
    assert str(journal) in r.stderr
    assert "Traceback" not in r.stderr
    assert file_digests(ledger_path.parent) == before


def test_check_corrupt_snapshot(ledger_path: Path) -> None:
    _ledger_with_records(ledger_path)
    with TokenTracker(ledger_path) as t:
        t.compact()
    ledger_path.write_bytes(ledger_path.read_bytes()[:-5])
    before = file_digests(ledger_path.parent)
    r = run("check", "--ledger", str(ledger_path))
    assert r.returncode == 1
    assert str(ledger_path) in assert_one_error_line(r.stderr)
    assert file_digests(ledger_path.parent) == before
    assert not [p for p in ledger_path.parent.iterdir() if ".corrupt-" in p.name]


def test_check_deeply_nested_snapshot_is_one_line(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(b"[" * 200_000)
    before = file_digests(ledger_path.parent)
    r = run("check", "--ledger", str(ledger_path))
    assert r.returncode == 1
    assert str(ledger_path) in assert_one_error_line(r.stderr)
    assert file_digests(ledger_path.parent) == before


def test_check_torn_tail_is_a_note_not_a_failure(ledger_path: Path) -> None:
    _ledger_with_records(ledger_path)
    journal = Path(f"{ledger_path}.journal")
    with journal.open("ab") as f:
        f.write(b'["r",1.0,"to')
    before = file_digests(ledger_path.parent)
    r = run("check", "--ledger", str(ledger_path))
    assert r.returncode == 0, r.stderr
    assert "torn" in r.stdout
    assert file_digests(ledger_path.parent) == before


def test_check_missing_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.json"
    assert main(["check", "--ledger", str(path)]) == 0
    assert "no snapshot" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # check created nothing


# -- in-process, for speed -----------------------------------------------------------------


def test_main_in_process(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = str(ledger_path)
    odd = 'we"ird\nid \U0001f680'
    assert main(["track", odd, SONNET, "2000", "100", "--ledger", ledger]) == 0
    assert main(["track", odd, HAIKU, "10", "5", "--ledger", ledger]) == 0
    capsys.readouterr()
    assert main(["status", odd, "--ledger", ledger]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("2.1K tok $")
    assert main(["report", "--ledger", ledger]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 3  # header, one line for the session, total
    assert 'we"ird\\nid \\U0001f680' in out
    assert main(["report", "--json", "--ledger", ledger]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["sessions"]) == [odd]
    assert report["sessions"][odd]["request_count"] == 2
    assert set(report["sessions"][odd]["models"]) == {SONNET, HAIKU}
    assert main(["status", "missing", "--ledger", ledger]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err)


def test_ledger_from_environment(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKEN_TRACKER_LEDGER", str(ledger_path))
    assert main(["track", "env", SONNET, "1", "2"]) == 0
    assert ledger_path.parent.is_dir()
    with TokenTracker(ledger_path) as t:
        assert t.get_session_usage("env") is not None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "h", "1h 30m", "-1h", "1h-", "m30"])
def test_parse_duration_rejects(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)
