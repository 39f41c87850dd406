"""Test helpers for external tools: skip when missing on a laptop, fail under CI=true;
render a page with headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    """The path of ``name``; skips the test when missing, or fails it under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required under CI=true")
    pytest.skip(f"{name} not installed")


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    """The DOM of ``url`` after headless Chromium rendered it (``--dump-dom``).

    ``profile`` is a fresh user-data directory; the run fails the test after 60 s.
    """
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
    ]
    # Own process group: on timeout the renderer and helper processes go too.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium --dump-dom did not finish within 60 s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, err.decode("utf-8", "replace")[-2000:]
    return out.decode("utf-8")
