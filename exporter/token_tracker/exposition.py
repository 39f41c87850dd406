"""A pull ``MetricReader`` that renders OTel metrics as Prometheus text or OpenMetrics.

It does what the stock ``PrometheusMetricReader`` does, without building
prometheus_client metric objects per scrape: label sets are escaped once per
series and cached, which keeps a scrape of tens of thousands of series cheap.

Translation: dots and other invalid characters in metric and label names become
``_``; monotonic sums are counters (``_total`` appended), other sums and gauges
are gauges, explicit-bucket histograms keep their buckets. Units are not
appended to names. ``otel_scope_name``/``otel_scope_version`` labels are added
only with ``scope_labels=True``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString as _go_float

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_CUMULATIVE = {
    kind: AggregationTemporality.CUMULATIVE
    for kind in (Counter, UpDownCounter, Histogram, ObservableCounter,
                 ObservableUpDownCounter, ObservableGauge)
}  # fmt: skip


def metric_name(name: str) -> str:
    """An OTel instrument name as a Prometheus metric name."""
    name = _INVALID_NAME.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


def label_name(name: str) -> str:
    """An OTel attribute key as a Prometheus label name."""
    name = _INVALID_LABEL.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


def escape_label_value(value: str) -> str:
    """Escape backslash, double quote and newline, as both formats require."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def go_float(value: float) -> str:
    """Format a float the way Prometheus (Go) does, via prometheus_client."""
    return _go_float(value)  # type: ignore[no-untyped-call,no-any-return]


def _value(v: Any) -> str:
    return str(v) if type(v) is int else go_float(v)


def wants_openmetrics(accept: str | None) -> bool:
    """Whether an Accept header asks for OpenMetrics (prometheus_client's negotiation)."""
    _, content_type = choose_encoder(accept or "")
    return content_type.startswith("application/openmetrics-text")


class PrometheusTextReader(MetricReader):
    """Collects on demand and renders the result; thread-safe."""

    def __init__(self, *, scope_labels: bool = False) -> None:
        super().__init__(preferred_temporality=dict(_CUMULATIVE))  # type: ignore[arg-type]
        self._scope_labels = scope_labels
        self._render_lock = threading.Lock()
        self._data: MetricsData | None = None
        # id(attributes) -> (attributes, rendered label text). Holding the mapping
        # keeps its id from being reused; the SDK reuses one mapping per series.
        self._labels: dict[int, tuple[Mapping[str, Any], str]] = {}

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._data = metrics_data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to flush: this reader only answers scrapes."""

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """Collect now and return ``(body, content_type)`` for an Accept header."""
        openmetrics = wants_openmetrics(accept)
        with self._render_lock:
            self._data = None
            self.collect()
            data = self._data
            body = self._render(data, openmetrics) if data is not None else ""
        if openmetrics:
            return (body + "# EOF\n").encode("utf-8"), OPENMETRICS_CONTENT_TYPE
        return body.encode("utf-8"), TEXT_CONTENT_TYPE

    def _label_text(self, attributes: Mapping[str, Any] | None, extra: str) -> str:
        if not attributes:
            return "{" + extra[1:] + "}" if extra else ""
        key = id(attributes)
        cached = self._labels.get(key)
        if cached is not None and cached[0] is attributes:
            text = cached[1]
        else:
            text = ",".join(
                f'{label_name(k)}="{escape_label_value(str(v))}"' for k, v in attributes.items()
            )
            self._labels[key] = (attributes, text)
        return "{" + text + extra + "}"

    def _render(self, data: MetricsData, openmetrics: bool) -> str:
        out: list[str] = []
        append = out.append
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                extra = ""
                if self._scope_labels:
                    scope = scope_metrics.scope
                    extra = (
                        f',otel_scope_name="{escape_label_value(scope.name)}"'
                        f',otel_scope_version="{escape_label_value(scope.version or "")}"'
                    )
                for metric in scope_metrics.metrics:
                    self._render_metric(metric, extra, openmetrics, append)
        # Entries of series that vanished (pruned sessions) would pile up: start over.
        if len(self._labels) > 2 * len(out) + 1024:
            self._labels.clear()
        return "".join(out)

    def _render_metric(self, metric: Any, extra: str, openmetrics: bool, append: Any) -> None:
        name = metric_name(metric.name)
        data = metric.data
        labels = self._label_text
        if isinstance(data, Sum) and data.is_monotonic:
            base = name[: -len("_total")] if name.endswith("_total") else name
            sample = base + "_total"
            family, kind = (base if openmetrics else sample), "counter"
        elif isinstance(data, (Sum, Gauge)):
            sample = family = name
            kind = "gauge"
        elif isinstance(data, HistogramData):
            family, kind = name, "histogram"
        else:  # exponential histograms are not produced by our instruments
            return
        points = data.data_points
        if not points:
            return
        append(f"# HELP {family} {_escape_help(metric.description or '', openmetrics)}\n")
        append(f"# TYPE {family} {kind}\n")
        if kind != "histogram":
            for p in points:
                append(f"{sample}{labels(p.attributes, extra)} {_value(p.value)}\n")
            return
        for p in points:
            text = labels(p.attributes, extra)
            inner = text[1:-1] + "," if text else ""
            cumulative = 0
            for bound, count in zip(p.explicit_bounds, p.bucket_counts, strict=False):
                cumulative += count
                append(f'{name}_bucket{{{inner}le="{go_float(bound)}"}} {cumulative}\n')
            append(f'{name}_bucket{{{inner}le="+Inf"}} {p.count}\n')
            append(f"{name}_count{text} {p.count}\n")
            append(f"{name}_sum{text} {_value(p.sum)}\n")
