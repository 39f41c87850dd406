"""Wiring at the edge: a MeterProvider, its readers, and the HTTP server.

Nothing here runs at import. ``start_exporter`` (also ``TokenTracker.start_exporter``)
serves a tracker from a host process on a daemon thread; ``token-tracker serve``
uses the same pieces in the foreground.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    Exemplar,
    ExemplarReservoir,
    MeterProvider,
)
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from .errors import ConfigError, TokenTrackerError
from .exposition import PrometheusTextReader
from .metrics import TOKEN_BUCKETS, UNLIMITED_SERIES, MetricsOptions, TrackerMetrics
from .server import ExporterServer, parse_listen_address
from .statuspage import render_status_page
from .webconfig import WebConfig

if TYPE_CHECKING:
    from .tracker import TokenTracker

log = logging.getLogger("token_tracker")

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9464"
_OTLP_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def _version() -> str:
    from . import __version__

    return __version__


class _NoExemplars(ExemplarReservoir):
    """Observable ledger totals carry no trace context: keep no exemplars at all."""

    def offer(self, *args: Any, **kwargs: Any) -> None:
        return None

    def collect(self, point_attributes: Any) -> list[Exemplar]:
        return []


def _no_exemplars(aggregation_type: type) -> Any:
    return lambda **kwargs: _NoExemplars()


def metric_views() -> list[View]:
    """Views that keep every series (no overflow folding) and set the token buckets.

    The SDK folds series past 2,000 per instrument into one overflow series by
    default; the per-session families would lose data that way.
    """
    return [
        View(
            instrument_name="token_tracker_*",
            aggregation_cardinality_limit=UNLIMITED_SERIES,
            exemplar_reservoir_factory=_no_exemplars,
        ),
        View(
            instrument_name="gen_ai.client.token.usage",
            aggregation=ExplicitBucketHistogramAggregation(list(TOKEN_BUCKETS)),
            aggregation_cardinality_limit=UNLIMITED_SERIES,
            exemplar_reservoir_factory=_no_exemplars,
        ),
    ]


def otlp_reader_from_env() -> MetricReader | None:
    """A push reader when the standard ``OTEL_EXPORTER_OTLP_*`` variables ask for one."""
    if not any(os.environ.get(name) for name in _OTLP_ENV):
        return None
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found]
                OTLPMetricExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
    except ImportError:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_* is set but the OTLP exporter is not installed; "
            "install token-tracker-exporter[otlp]"
        ) from None
    from .exposition import _CUMULATIVE

    # Cumulative, so pushed values equal the ledger's totals like the scrape does.
    return PeriodicExportingMetricReader(OTLPMetricExporter(preferred_temporality=_CUMULATIVE))


def build_meter_provider(readers: Sequence[MetricReader]) -> MeterProvider:
    """The default MeterProvider: our views, no exemplars, a service resource."""
    return MeterProvider(
        metric_readers=list(readers),
        views=metric_views(),
        exemplar_filter=AlwaysOffExemplarFilter(),
        resource=Resource.create({"service.name": "token-tracker-exporter"}),
    )


class Exporter:
    """The HTTP app: /metrics from the OTel reader, the status page, health."""

    def __init__(
        self,
        tracker: TokenTracker,
        options: MetricsOptions | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        reader: PrometheusTextReader | None = None,
        scope_labels: bool = False,
        otlp: bool = True,
    ) -> None:
        self.tracker = tracker
        if meter_provider is None:
            reader = reader or PrometheusTextReader(scope_labels=scope_labels)
            readers: list[MetricReader] = [reader]
            push = otlp_reader_from_env() if otlp else None
            if push is not None:
                readers.append(push)
            meter_provider = build_meter_provider(readers)
        self.reader = reader
        self.meter_provider = meter_provider
        self.metrics = TrackerMetrics(tracker, meter_provider, options, version=_version())

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        if self.reader is None:
            return b"no Prometheus reader is registered on this MeterProvider\n", "text/plain"
        return self.reader.render(accept)

    def status_page(self) -> str:
        return render_status_page(self.tracker)

    def health(self) -> tuple[bool, str]:
        try:
            self.tracker._read_state()
        except (TokenTrackerError, OSError) as exc:
            return False, f"ledger unavailable: {exc}\n"
        return True, "ok\n"

    def shutdown(self) -> None:
        """Flush and stop the readers (pushes a last OTLP export)."""
        # Stop recording the histogram for this (now shut down) provider.
        with contextlib.suppress(ValueError):
            self.tracker._ledger.listeners.remove(self.metrics._on_request)
        self.meter_provider.shutdown()


class ExporterHandle:
    """A running embedded exporter; ``stop()`` ends it."""

    def __init__(self, exporter: Exporter, server: ExporterServer | None) -> None:
        self.exporter = exporter
        self.server = server

    @property
    def serving(self) -> bool:
        """False when the address was taken and this process serves nothing."""
        return self.server is not None

    @property
    def url(self) -> str | None:
        return self.server.url if self.server else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.exporter.shutdown()


def start_exporter(
    tracker: TokenTracker,
    *,
    listen_address: str = DEFAULT_LISTEN_ADDRESS,
    options: MetricsOptions | None = None,
    web_config: WebConfig | None = None,
    **exporter_args: Any,
) -> ExporterHandle:
    """Serve /metrics, / and /healthz for ``tracker`` on a daemon thread.

    When the address is taken the host carries on: another exporter is
    presumably serving the same ledger. The handle then reports ``serving=False``.
    """
    host, port = parse_listen_address(listen_address)
    exporter = Exporter(tracker, options, **exporter_args)
    try:
        server = ExporterServer(exporter, host=host, port=port, web_config=web_config)
    except OSError as exc:
        log.warning("token-tracker exporter not started on %s: %s", listen_address, exc)
        return ExporterHandle(exporter, None)
    server.start()
    log.info("token-tracker exporter serving %s", server.url)
    return ExporterHandle(exporter, server)
