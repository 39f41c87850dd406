"""Shared fixtures: every test runs with a private HOME and no tracker env vars."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _metrics_helpers import Scraper
    from token_tracker import TokenTracker
    from token_tracker.metrics import MetricsOptions

REPO = Path(__file__).resolve().parent.parent
SEED_DIRS = (Path("/work/shared/seed"), REPO.parent / "shared" / "seed")


def seed_file(name: str) -> Path:
    """A file of the seed (the earlier tracker's docs and ledger)."""
    for directory in SEED_DIRS:
        if (directory / name).is_file():
            return directory / name
    pytest.skip(f"seed file {name} not found in {SEED_DIRS}")
    raise AssertionError("unreachable")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A temporary HOME, and no ledger/pricing overrides from the developer's shell."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TOKEN_TRACKER_LEDGER", raising=False)
    monkeypatch.delenv("TOKEN_TRACKER_PRICING", raising=False)
    return home


@pytest.fixture
def home(_isolated_env: Path) -> Path:
    return _isolated_env


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "token_usage.json"


def file_digests(directory: Path) -> dict[str, str]:
    """Name -> sha256 of every file in ``directory`` (to prove nothing changed)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes: the package importable, no tracker vars."""
    env = dict(os.environ)
    env.pop("TOKEN_TRACKER_LEDGER", None)
    env.pop("TOKEN_TRACKER_PRICING", None)
    src = str(REPO / "exporter")
    extra = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{src}{os.pathsep}{extra}" if extra else src
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


# The package is imported inside the fixtures below, so that collecting a test that
# needs none of them never imports it.


@pytest.fixture
def tracker(ledger_path: Path) -> Iterator[TokenTracker]:
    """A tracker on ``ledger_path``, closed after the test."""
    from token_tracker import TokenTracker

    with TokenTracker(ledger_path) as t:
        yield t


@pytest.fixture
def make_tracker(ledger_path: Path) -> Iterator[Callable[[], TokenTracker]]:
    """Opens more trackers on ``ledger_path`` (other writers); all closed after the test."""
    from token_tracker import TokenTracker

    made: list[TokenTracker] = []

    def make() -> TokenTracker:
        made.append(TokenTracker(ledger_path))
        return made[-1]

    yield make
    for t in made:
        t.close()


@pytest.fixture
def make_scraper(ledger_path: Path) -> Iterator[Callable[..., Scraper]]:
    """Opens Scrapers (tracker and exporter) on ``ledger_path``; all closed after the test."""
    from _metrics_helpers import Scraper

    made: list[Scraper] = []

    def make(options: MetricsOptions | None = None) -> Scraper:
        made.append(Scraper(ledger_path, options))
        return made[-1]

    yield make
    for s in made:
        s.close()


# Fixtures shared by several test files, registered once: start_server (_server.py) and
# the session-scoped Prometheus stack (_stack.py).
pytest_plugins = ["_server", "_stack"]
