"""Prometheus metrics: GET /metrics (open, like health).

Request counts and latencies are recorded by the app's request hooks. Task
counts and queue depths are read from Redis when Prometheus scrapes, so they
are the same whichever worker answers. Under gunicorn with several workers,
set PROMETHEUS_MULTIPROC_DIR (api/gunicorn_conf.py does) and the request
metrics of every worker are merged, with those the core records in them
(orchestrator.metrics: the webhook receipts).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.metrics import registry as core_metrics
from orchestrator.metrics.labels import bounded
from orchestrator.steps import QUEUES  # the queues the API reports (no Celery app built to be scraped)
from orchestrator.store import StoreError
from orchestrator.workspace.cleanup import DISK_GAUGE

log = logging.getLogger("orchestrator.api")

bp = Blueprint("metrics", __name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """The request counter and latency histogram of one app."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter(
            "orchestrator_api_requests",
            "API requests by route, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "orchestrator_api_request_duration_seconds",
            "API request latency by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # (route, method, status) -> (counter, histogram) children: `labels()` checks and
        # locks on every call, and routes, methods and statuses are few.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)


class StoreCollector(Collector):
    """Tasks by status, queue depths and the workspace's disk use, read from Redis at scrape time."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self) -> Iterator[Metric]:
        store = self.app.extensions["orchestrator"].store()
        up = GaugeMetricFamily("orchestrator_store_up", "1 when the task store (Redis) answered this scrape.")
        try:
            counts = store.count_by_status()
            depths = store.queue_depths(QUEUES)
            gauges = store.gauges()
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        tasks = GaugeMetricFamily("orchestrator_tasks", "Tasks by status.", labels=["status"])
        for status, n in counts.items():
            tasks.add_metric([status], n)
        yield tasks
        queues = GaugeMetricFamily("orchestrator_queue_depth", "Messages waiting in each queue.", labels=["queue"])
        for queue, n in depths.items():
            queues.add_metric([queue], n)
        yield queues
        yield from _disk(gauges)


def _disk(gauges: dict[str, float]) -> Iterator[Metric]:
    """The workspace's disk use as the last sweep measured it, whichever worker ran it.

    Read from the store like the task counts: every API pod reports the same
    figure, where a gauge in each worker would go stale in the pods that did
    not sweep last.
    """
    total = GaugeMetricFamily(
        "orchestrator_workspace_disk_bytes", "Disk used by the shared workspace, as its last sweep measured it."
    )
    per_service = GaugeMetricFamily(
        "orchestrator_workspace_service_disk_bytes",
        "Disk used by one service's part of the workspace, as its last sweep measured it.",
        labels=["service"],
    )
    services: dict[str, float] = {}
    for name, value in gauges.items():
        if name == DISK_GAUGE:
            total.add_metric([], value)
        elif name.startswith(DISK_GAUGE + ":"):
            service = bounded("service", name[len(DISK_GAUGE) + 1 :])  # past the cap, "other" adds up
            services[service] = services.get(service, 0.0) + value
    for service, value in services.items():
        per_service.add_metric([service], value)
    yield total
    yield per_service


def init_metrics(app: Flask) -> RequestMetrics:
    """Create the app's metrics (a registry per app, so several apps can coexist in tests)."""
    metrics = RequestMetrics(CollectorRegistry(auto_describe=True))
    app.extensions["orchestrator_metrics"] = metrics
    return metrics


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text: requests, latency, tasks by status, queue depths."""
    own: RequestMetrics = current_app.extensions["orchestrator_metrics"]
    scrape = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(scrape)  # every worker's request metrics
        text = b""
    else:
        # One process: its request metrics, and those the core records in it (webhook receipts...).
        text = generate_latest(own.registry) + generate_latest(core_metrics.get().registry)
    scrape.register(StoreCollector(current_app._get_current_object()))  # type: ignore[attr-defined]
    return Response(text + generate_latest(scrape), mimetype=CONTENT_TYPE_LATEST)
