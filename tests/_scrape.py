"""Reading a /metrics exposition back in tests, with prometheus_client's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: (sample name, label set) -> value
Values = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Values:
    """Every sample of a Prometheus text exposition; a duplicate series fails the test."""
    out: Values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out
