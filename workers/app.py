"""The Celery application: `celery -A workers.app worker -Q <queues>`.

Creating the app reads the settings but connects to nothing; the broker is
contacted only when a worker starts or a message is sent.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from orchestrator import dispatch, tracing
from orchestrator.celery_app import celery_config, create_celery
from orchestrator.celery_dispatch import CeleryDispatcher
from orchestrator.settings import ConfigError, get_settings
from orchestrator.steps import QUEUES
from workers import heartbeat

__all__ = ["QUEUES", "app", "celery_config", "create_celery"]


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def scrub_worker_logs(logger: Any = None, **kwargs: Any) -> None:
    """Put the secret filter on every handler Celery installed, so no configured secret reaches a worker's log."""
    from orchestrator.logs import SecretFilter

    try:
        secrets = get_settings().secret_values()
    except ConfigError:
        return
    for handler in getattr(logger, "handlers", []):
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter(secrets))


@signals.celeryd_init.connect
def serve_metrics(**kwargs: Any) -> None:
    """Serve the worker's metrics on ORCHESTRATOR_METRICS_PORT, its pool processes merged (orchestrator.metrics.server).

    celeryd_init: the worker's main process, before its pool starts, so every pool
    process writes its figures to the directory this sets.
    """
    port = get_settings().metrics_port
    if port:
        from orchestrator.metrics import server

        server.prepare_directory()
        server.serve(port)


@signals.worker_process_shutdown.connect
def forget_pool_process(pid: int | None = None, **kwargs: Any) -> None:
    """A pool process ends: its live gauges leave the merged metrics."""
    from orchestrator.metrics import server

    server.process_ended(pid or os.getpid())


@signals.worker_shutdown.connect
def remove_metrics_directory(**kwargs: Any) -> None:
    """The worker stops: remove the metrics directory it created (one it was given stays)."""
    from orchestrator.metrics import server

    server.remove_directory()


@signals.task_postrun.connect
def count_step(sender: Any = None, state: str | None = None, **kwargs: Any) -> None:
    """Steps by name and result (success, failure, retry), counted in the process that ran them."""
    from orchestrator.metrics import registry

    registry.step_done(getattr(sender, "name", ""), state or "unknown")


@signals.worker_process_init.connect
def trace_worker_process(**kwargs: Any) -> None:
    """Tracing in each prefork child: an exporter's thread and connections do not survive a fork."""
    tracing.setup(get_settings(), "worker", worker=True)


@signals.worker_init.connect
def trace_worker(sender: Any = None, **kwargs: Any) -> None:
    """Tracing in the worker itself when its pool runs steps in this process (solo, threads)."""
    if "prefork" not in str(getattr(sender, "pool_cls", "prefork")).lower():
        tracing.setup(get_settings(), "worker", worker=True)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def flush_traces(**kwargs: Any) -> None:
    """Send the spans still buffered before the process ends."""
    tracing.shutdown()


def _load() -> Celery:
    try:
        tracing.require(get_settings())  # configured but not installed: say so now, not in every child
        return create_celery(include=["workers.steps"])
    except ConfigError as exc:
        # One readable line instead of a traceback, then a non-zero exit.
        raise SystemExit(f"orchestrator: configuration error: {exc}") from None


app = _load()
# `--heartbeat-file`: the consumer heartbeat the chart's liveness probe and `orchestrator up` read.
heartbeat.install(app)


def default_dispatcher() -> CeleryDispatcher:
    """What the steps this process runs send their next steps through: this app."""
    return CeleryDispatcher(app)


dispatch.set_default(default_dispatcher)
