"""The Celery application: `celery -A workers.app worker -Q <queues>`.

Creating the app reads the settings but connects to nothing; the broker is
contacted only when a worker starts or a message is sent.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from orchestrator import dispatch
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


def _load() -> Celery:
    try:
        return create_celery(include=["workers.steps"])
    except ConfigError as exc:
        # One readable line instead of a traceback, then a non-zero exit.
        raise SystemExit(f"orchestrator: configuration error: {exc}") from None


app = _load()
# `--heartbeat-file`: the consumer heartbeat the chart's liveness probe and `orchestrator up` read.
heartbeat.install(app)
# The steps this process runs send their next steps through this app.
dispatch.set_default(lambda: CeleryDispatcher(app))
