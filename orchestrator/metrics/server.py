"""Serving the metrics of a worker or the watcher on their own port (ORCHESTRATOR_METRICS_PORT).

A Celery worker runs its steps in pool processes that come and go, so its
metrics are prometheus-client's multiprocess mode: every process writes its
figures to files in one directory and the worker's main process serves them
merged, on one port per pod. The directory must be known before
prometheus-client is first imported, which orchestrator.metrics.registry
defers until something is recorded; `prepare_directory` runs in the worker's
main process before its pool starts. The watcher is one process: it serves
its own figures, or the directory's when one is set.

Nothing here runs at import: the entry points (workers/app.py, the watcher
command) call it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("orchestrator.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
_created: list[str] = []


def prepare_directory() -> str:
    """The multiprocess directory of this worker, emptied (or created when none is set); returns its path.

    A directory set in the environment must be the worker's own (the chart
    gives each worker container one): what an earlier start left there is
    removed, or its counters would be added to this start's.
    """
    path = os.environ.get(ENV, "").strip()
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = tempfile.mkdtemp(prefix="orchestrator-worker-metrics-")
        _created.append(path)
        os.environ[ENV] = path
    if _chose_memory():
        # prometheus-client was imported before the directory was set: the `celery`
        # command loads Flower's plugin, whose events module imports it. It picks the
        # storage of each metric when the metric is built, from this module global, and
        # ours are built on first use (none yet): switch it so they write to the directory.
        from prometheus_client import values

        from orchestrator.metrics import registry

        if registry.built():
            log.warning("metrics: built before %s was set; pool processes are not merged", ENV)
        values.ValueClass = values.MultiProcessValue()
    return path


def _chose_memory() -> bool:
    """True when prometheus-client was imported already and keeps its values in memory."""
    values = sys.modules.get("prometheus_client.values")
    return values is not None and values.ValueClass is values.MutexValue


def _multiprocess() -> bool:
    return bool(os.environ.get(ENV)) and not _chose_memory()


def scrape_registry() -> Any:
    """The registry a scrape reads: every process's files merged, or this process's metrics."""
    if _multiprocess():
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from orchestrator.metrics.registry import get

    return get().registry


def serve(port: int, host: str = "") -> Any:
    """Start the metrics HTTP server in a daemon thread (GET /metrics); returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host or "0.0.0.0", registry=scrape_registry())
    log.info("metrics: serving on port %d%s", port, " (pool processes merged)" if _multiprocess() else "")
    return server


def process_ended(pid: int) -> None:
    """A pool process ended: its live gauges leave the merged figures (its counters stay)."""
    if _multiprocess():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove_directory() -> None:
    """Remove the directory `prepare_directory` created (not one the environment named)."""
    while _created:
        shutil.rmtree(_created.pop(), ignore_errors=True)
