"""The earlier tracker's ledger file: it loads with its totals, is backed up once, grows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _ledger_helpers import snapshot_doc
from _models import OPUS, SONNET
from conftest import seed_file
from token_tracker import TokenTracker, TokenUsage


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
    doc = snapshot_doc(legacy)
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
