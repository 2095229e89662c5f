"""Prometheus collectors, in a registry per app so that two apps in one process (tests) never share counts.

Route labels are route templates (``/predict``), never raw paths, so a scanner probing random URLs cannot blow
up the number of time series. The process and platform collectors (CPU seconds, RSS, open fds, GC, Python
version) are registered too, as in the default registry. No ``*_created`` series: they double the series count
of every counter and histogram and no dashboard or alert here reads them.

``serve_on`` opens a second, unauthenticated listener for scrapers (``DEEPFER_METRICS_PORT``): Kubernetes'
``prometheus.io/*`` annotations and most scrape setups cannot send an API key.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STAGE_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
_FACE_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


class Metrics:
    """All of the service's collectors; ``render`` produces the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # process-wide in prometheus_client; the service wants it everywhere. Ignored: the library leaves this one
        # function unannotated.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.requests = Counter(
            "deepfer_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "deepfer_request_seconds",
            "HTTP request latency by route and status",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.faces_per_request = Histogram(
            "deepfer_faces_per_request",
            "faces returned per analysed image (one image per /predict request)",
            buckets=_FACE_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "deepfer_batch_size", "faces per classifier run", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("deepfer_queue_depth", "faces waiting for the classifier", registry=self.registry)
        self.images_in_flight = Gauge(
            "deepfer_images_in_flight", "images being decoded or detected (timed-out ones too)", registry=self.registry
        )
        self.stage_seconds = Histogram(
            "deepfer_stage_seconds",
            "time per pipeline stage (decode, detect, align; queue_wait for a classifier batch, classify per run)",
            ["stage"],
            buckets=_STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.rejected = Counter(
            "deepfer_overloaded", "requests refused with 503 because a queue was full", registry=self.registry
        )

        self.errors = Counter(
            "deepfer_errors",
            "error answers by code, for whole requests and for failed files of a batch",
            ["code"],
            registry=self.registry,
        )
        self.model_info = Info("deepfer_model", "the emotion model being served", registry=self.registry)
        self.reloads = Counter(
            "deepfer_model_reloads", "model reloads by outcome (ok, rejected)", ["outcome"], registry=self.registry
        )

    def served_model(self, name: str, version: str, sha256: str) -> None:
        """Replace ``deepfer_model_info``'s labels: one series, always the model that answers now."""
        self.model_info.info({"name": name, "version": version, "sha256": sha256})

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve_on(self, host: str, port: int) -> WSGIServer:
        """Serve this registry on its own port, in a daemon thread; ``shutdown()`` the result to stop it."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server
