"""Test helpers for external tools: skip when missing on a laptop, fail under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """The path of ``name``; skips the test when missing, or fails it under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required under CI=true")
    pytest.skip(f"{name} not installed")
