"""`token-tracker serve` as a child process, for the end-to-end tests: start it, wait
for the address it logs and for /healthz, read its stderr, stop it."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PYTHON, subprocess_env

#: the line serve logs once it listens: "token-tracker serving http://127.0.0.1:9464 (...)"
_SERVING = re.compile(r"serving (https?://\S+)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_argv(ledger: Path, address: str, *extra: str) -> list[str]:
    """The command line of `token-tracker serve` on ``ledger``, listening on ``address``."""
    return [
        PYTHON,
        "-m",
        "token_tracker",
        "serve",
        "--ledger",
        str(ledger),
        "--web.listen-address",
        address,
        *extra,
    ]


def http(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    if method == "POST":
        request.data = b"x"
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Serve:
    """A `token-tracker serve` child process and the lines it writes to stderr.

    With ``port`` 0 the server picks a free port, and :meth:`wait_ready` learns its URL
    from the log; otherwise the URL is known up front and the log must name it.
    """

    def __init__(self, ledger: Path, port: int = 0, *extra: str) -> None:
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}" if port else ""
        self.proc = subprocess.Popen(
            serve_argv(ledger, self.address, *extra),
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def _serving_url(self, line: str) -> str | None:
        m = _SERVING.search(line)
        if m and (not self.url or m.group(1) == self.url):
            return m.group(1)
        return None

    def wait_ready(self, timeout: float = 20.0) -> str:
        """Wait for the logged address, then for /healthz to answer 200; the logged line."""
        deadline = time.monotonic() + timeout
        logged = None
        while logged is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                pytest.fail(f"serve did not log its address; stderr: {''.join(self.stderr)}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            url = self._serving_url(line)
            if url:
                self.url, logged = url, line
        while True:
            try:
                status, _, _ = http(self.url + "/healthz")
                if status == 200:
                    return logged
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("/healthz did not answer 200 in time")
            time.sleep(0.05)

    def terminate(self, timeout: float = 5.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit within {timeout} s of SIGTERM")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
