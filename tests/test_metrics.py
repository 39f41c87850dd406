"""TrackerMetrics: values equal the ledger, follow other processes, survive restarts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from _metrics_helpers import (
    PER_MODEL,
    Scraper,
    assert_equals_ledger,
    family,
    labels,
    record_some,
    totals,
)
from _models import HAIKU, SONNET
from conftest import PYTHON, subprocess_env
from token_tracker import TokenTracker, __version__
from token_tracker.exporter import Exporter
from token_tracker.metrics import MetricsOptions
from token_tracker.pricing import NANO_PER_USD

MakeScraper = Callable[..., Scraper]


def test_values_equal_the_ledger(ledger_path: Path, make_scraper: MakeScraper) -> None:
    s = make_scraper()
    record_some(s.tracker)
    values = s.scrape()
    assert_equals_ledger(values, ledger_path)
    # Spot-check absolute numbers, independent of the state internals.
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 3500
    assert values[("token_tracker_cached_tokens_total", labels(model=SONNET))] == 400
    assert values[("token_tracker_cache_creation_tokens_total", labels(model=SONNET))] == 500
    assert values[("token_tracker_requests_total", labels(model=SONNET))] == 2
    assert values[("token_tracker_unpriced_tokens_total", labels(model="unknown-model-x"))] == 11
    assert values[("token_tracker_cost_usd_total", labels(model="unknown-model-x"))] == 0
    assert values[("token_tracker_sessions", frozenset())] == 3
    assert values[("token_tracker_ledger_records_total", frozenset())] == 5
    assert (
        values[("token_tracker_session_requests_total", labels(session_id="alpha", model=HAIKU))]
        == 1
    )
    # The cost equals the tracker's own session total, to the nano-dollar.
    alpha = s.tracker.get_session_usage("alpha")
    assert alpha is not None
    got = sum(
        v
        for lbl, v in family(values, "token_tracker_session_cost_usd_total").items()
        if ("session_id", "alpha") in lbl
    )
    assert round(got * NANO_PER_USD) == round(alpha.total_cost_usd * NANO_PER_USD)


def test_gauges_prices_budgets_ledger_and_build_info(
    ledger_path: Path, make_scraper: MakeScraper
) -> None:
    s = make_scraper()
    record_some(s.tracker)
    values = s.scrape()
    prices = family(values, "token_tracker_price_usd_per_token")
    expected = {
        labels(model=model, kind=kind): usd
        for model, price in s.tracker.prices.items()
        for kind, usd in price.per_token_usd().items()
    }
    assert prices == expected
    assert {dict(lbl)["kind"] for lbl in prices} == {"input", "output", "cached", "cache_creation"}
    assert prices[labels(model=SONNET, kind="input")] == pytest.approx(3e-6, rel=1e-12)
    assert prices[labels(model=SONNET, kind="output")] == pytest.approx(15e-6, rel=1e-12)
    budgets = family(values, "token_tracker_budget_usd")
    assert budgets[labels(scope="session")] == 1.0  # the seed's cost alert
    assert set(budgets) == {labels(scope="session"), labels(scope="day"), labels(scope="month")}
    size = sum(
        os.stat(p).st_size for p in (ledger_path, Path(f"{ledger_path}.journal")) if p.exists()
    )
    assert values[("token_tracker_ledger_size_bytes", frozenset())] == size > 0
    last = max(x.last_updated for x in s.tracker.get_all_sessions().values())
    assert values[("token_tracker_ledger_last_record_timestamp_seconds", frozenset())] == last
    assert values[("token_tracker_ledger_recovered_tail_total", frozenset())] == 0
    assert family(values, "token_tracker_build_info") == {labels(version=__version__): 1}


def test_configured_budgets(make_scraper: MakeScraper) -> None:
    options = MetricsOptions(budgets={"session": 2.5, "day": 0.0, "month": 1234.5})
    budgets = family(make_scraper(options).scrape(), "token_tracker_budget_usd")
    assert budgets == {
        labels(scope="session"): 2.5,
        labels(scope="day"): 0.0,
        labels(scope="month"): 1234.5,
    }


def test_recovered_tail_is_counted(ledger_path: Path, make_scraper: MakeScraper) -> None:
    with TokenTracker(ledger_path) as t:
        t.track_request("s", SONNET, 10, 10)
    with open(f"{ledger_path}.journal", "ab") as f:
        f.write(b'["r",1.0,"torn')  # a writer killed mid-record
    values = make_scraper().scrape()
    assert values[("token_tracker_ledger_recovered_tail_total", frozenset())] == 1
    assert values[("token_tracker_ledger_records_total", frozenset())] == 1
    assert_equals_ledger(values, ledger_path)


def test_records_from_another_tracker_show_in_next_scrape(
    ledger_path: Path, make_scraper: MakeScraper, make_tracker: Callable[[], TokenTracker]
) -> None:
    s = make_scraper()
    s.tracker.track_request("own", SONNET, 100, 10)
    first = s.scrape()
    other = make_tracker()
    other.track_request("other", HAIKU, 7000, 300, 1000)
    other.track_request("own", SONNET, 50, 5)
    values = s.scrape()
    assert values[("token_tracker_input_tokens_total", labels(model=HAIKU))] == 7000
    assert values[("token_tracker_input_tokens_total", labels(model=SONNET))] == 150
    assert values[("token_tracker_ledger_records_total", frozenset())] == 3
    assert ("token_tracker_input_tokens_total", labels(model=HAIKU)) not in first
    assert_equals_ledger(values, ledger_path)


def test_records_from_a_subprocess_show_in_next_scrape(
    ledger_path: Path, make_scraper: MakeScraper
) -> None:
    s = make_scraper()
    s.tracker.track_request("own", SONNET, 100, 10)
    s.scrape()
    code = (
        "import sys\n"
        "from token_tracker import TokenTracker\n"
        "with TokenTracker(sys.argv[1]) as t:\n"
        "    for i in range(50):\n"
        "        t.track_request('child', sys.argv[2], 100 + i, 10, 5)\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code, str(ledger_path), HAIKU],
        env=subprocess_env(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    values = s.scrape()
    assert values[("token_tracker_requests_total", labels(model=HAIKU))] == 50
    assert values[("token_tracker_input_tokens_total", labels(model=HAIKU))] == sum(
        100 + i for i in range(50)
    )
    assert (
        values[("token_tracker_session_requests_total", labels(session_id="child", model=HAIKU))]
        == 50
    )
    assert_equals_ledger(values, ledger_path)


def test_restart_continues_from_persisted_totals(
    ledger_path: Path, make_scraper: MakeScraper, make_tracker: Callable[[], TokenTracker]
) -> None:
    writer = make_tracker()
    record_some(writer)
    first = Scraper(ledger_path)
    before = first.scrape()
    assert_equals_ledger(before, ledger_path)
    first.close()
    second = make_scraper()
    after = second.scrape()
    counters = totals(before)
    assert counters
    assert totals(after) == counters
    # Still no double counting after compaction folds the journal into the snapshot.
    writer.compact()
    third = make_scraper()
    assert totals(third.scrape()) == counters
    assert totals(second.scrape()) == counters
    # And new records add on top of the persisted totals.
    writer.track_request("alpha", SONNET, 1, 1)
    grown = second.scrape()
    key = ("token_tracker_input_tokens_total", labels(model=SONNET))
    assert grown[key] == before[key] + 1
    assert_equals_ledger(grown, ledger_path)


def test_counters_keep_spend_after_session_reset(make_scraper: MakeScraper) -> None:
    s = make_scraper()
    record_some(s.tracker)
    before = s.scrape()
    assert s.tracker.reset_session_usage("alpha")
    after = s.scrape()
    for name in PER_MODEL:
        assert family(after, name) == family(before, name), name
    assert not any(("session_id", "alpha") in lbl for (_, lbl) in after)


def test_stopped_exporters_detach_from_the_tracker(ledger_path: Path) -> None:
    """A host that starts and stops exporters must not pile up ledger listeners."""
    with TokenTracker(ledger_path) as tracker:
        before = list(tracker._ledger.listeners)
        for _ in range(3):
            handle = tracker.start_exporter(listen_address="127.0.0.1:0")
            assert handle.serving
            handle.stop()
        exporter = Exporter(tracker, otlp=False)
        exporter.shutdown()
        assert tracker._ledger.listeners == before
