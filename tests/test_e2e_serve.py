"""End to end: `token-tracker serve` as a real process, fed by other processes, scraped,
checked by promtool, restarted, and its status page rendered by headless Chromium."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from _html import parse_page
from _metrics_helpers import assert_equals_ledger
from _scrape import Values, parse_samples
from _serve_process import Serve, free_port, http
from _tools import dump_dom, require_tool
from conftest import PYTHON, subprocess_env
from token_tracker import TokenTracker, format_usage_compact

pytestmark = pytest.mark.slow

SONNET = "claude-sonnet-4.5"
HAIKU = "claude-haiku-4.5"
ODD_IDS = ['we"ird', "back\\slash", "new\nline", "emoji \U0001f680 caf\u00e9", "a}b,c=d"]

WRITER = """
import json, sys
from token_tracker import TokenTracker
ledger, model, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with TokenTracker(ledger) as t:
    for n in range(20):
        for k, sid in enumerate(ids):
            t.track_request(sid, model, 1000 + 7 * n + k, 100 + n, (n * 13) % 500)
"""


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.kill()


def scrape(url: str) -> str:
    status, headers, body = http(url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    return body.decode("utf-8")


def counters(values: Values) -> Values:
    return {k: v for k, v in values.items() if k[0].endswith("_total")}


def run_writers(ledger: Path) -> None:
    plain = ["plain-a", "plain-b"]
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", WRITER, str(ledger), model, json.dumps(ids)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for model, ids in ((SONNET, ODD_IDS + plain), (HAIKU, [*ODD_IDS[:2], "plain-a"]))
    ]
    try:
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def test_serve_end_to_end(tmp_path: Path, servers: list[Serve]) -> None:
    promtool = require_tool("promtool")
    ledger = tmp_path / "ledger" / "token_usage.json"
    port = free_port()
    server = Serve(ledger, port)
    servers.append(server)
    logged = server.wait_ready()
    assert f"http://127.0.0.1:{port}" in logged

    # An empty ledger already scrapes.
    empty = parse_samples(scrape(server.url))
    assert empty[("token_tracker_sessions", frozenset())] == 0

    run_writers(ledger)
    text = scrape(server.url)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    values = parse_samples(text)
    assert_equals_ledger(values, ledger)
    sids = {
        dict(lbl)["session_id"]
        for (name, lbl) in values
        if name == "token_tracker_session_requests_total"
    }
    assert sids == {*ODD_IDS, "plain-a", "plain-b"}
    assert values[("token_tracker_requests_total", frozenset({("model", SONNET)}))] == 20 * 7
    assert values[("token_tracker_requests_total", frozenset({("model", HAIKU)}))] == 20 * 3

    # OpenMetrics on request.
    status, headers, body = http(
        server.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")

    # Unknown path and other methods.
    assert http(server.url + "/nope")[0] == 404
    status, headers, _ = http(server.url + "/metrics", method="POST")
    assert status == 405
    assert "GET" in headers["Allow"]

    # The status page, rendered by a real browser.
    chromium = require_tool("chromium")
    dom = dump_dom(chromium, server.url + "/", tmp_path / "chromium-profile")
    page = parse_page(dom)
    assert sorted(page.by_class["sid"]) == sorted({*ODD_IDS, "plain-a", "plain-b"})
    compact = page.by_class["compact"]
    with TokenTracker(ledger) as fresh:
        for sid, session in fresh.get_all_sessions().items():
            line = f"{sid} [{session.model_name}] "
            line += format_usage_compact(session.total_usage, session.model_name)
            assert line in compact, line
    assert len(page.by_class["detailed"]) == len(compact) == 7

    # SIGTERM: a clean, prompt exit.
    assert server.terminate() == 0
    assert "Traceback" not in "".join(server.stderr)

    # Restart on the same ledger: the same counters, no reset and no double count.
    again = Serve(ledger, free_port())
    servers.append(again)
    again.wait_ready()
    assert counters(parse_samples(scrape(again.url))) == counters(values)
    assert counters(parse_samples(scrape(again.url))) == counters(values)
    # SIGINT also stops it.
    again.proc.send_signal(signal.SIGINT)
    assert again.proc.wait(timeout=5) == 0


def test_serve_port_taken_fails_with_one_line(tmp_path: Path, servers: list[Serve]) -> None:
    ledger = tmp_path / "token_usage.json"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = Serve(ledger, port)
        servers.append(server)
        try:
            code = server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("serve on a taken port kept running")
    assert code == 1
    server.reader.join(timeout=5)  # stderr is at EOF once the process is gone
    lines = [line for line in "".join(server.stderr).splitlines() if line]
    assert len(lines) == 1, server.stderr
    assert "Traceback" not in lines[0]


def test_embedded_exporter(tmp_path: Path) -> None:
    ledger = tmp_path / "token_usage.json"
    port = free_port()
    first = TokenTracker(ledger)
    second = TokenTracker(ledger)
    handles = []
    try:
        handle = first.start_exporter(listen_address=f"127.0.0.1:{port}")
        handles.append(handle)
        assert handle.serving
        assert handle.url == f"http://127.0.0.1:{port}"
        first.track_request("embedded", SONNET, 1234, 56)
        second.track_request("other", HAIKU, 10, 20)
        values = parse_samples(scrape(handle.url))
        assert_equals_ledger(values, ledger)
        assert http(handle.url + "/healthz")[0] == 200
        status, _, body = http(handle.url + "/")
        assert status == 200
        assert b"embedded" in body

        # The port is taken: the host carries on, and the handle says so.
        taken = second.start_exporter(listen_address=f"127.0.0.1:{port}")
        handles.append(taken)
        assert taken.serving is False
        assert taken.url is None
        # The first one still serves.
        assert http(handle.url + "/healthz")[0] == 200
    finally:
        for h in handles:
            h.stop()
        first.close()
        second.close()
    with pytest.raises(OSError):
        http(f"http://127.0.0.1:{port}/healthz")
