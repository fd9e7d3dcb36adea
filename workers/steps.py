"""Pipeline steps. Each one only unpacks ids and calls plain code that does the work."""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Task

from orchestrator import runs
from orchestrator.runtime import get_store
from orchestrator.settings import get_settings
from orchestrator.store import StoreUnavailable
from workers.app import app

log = logging.getLogger("orchestrator.steps")


@app.task(name="orchestrator.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self: Task) -> dict[str, Any]:
    """Answer which worker and queue took the message (liveness and routing checks)."""
    info = self.request.delivery_info or {}
    return {"hostname": self.request.hostname or socket.gethostname(), "queue": info.get("routing_key")}


@app.task(name="orchestrator.handle_event", autoretry_for=(StoreUnavailable,), retry_backoff=True,
          retry_backoff_max=60, max_retries=20)
def handle_event(delivery_id: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Act on one verified GitHub delivery (routing and handlers in orchestrator.github.handlers)."""
    from orchestrator.github import handlers

    return handlers.handle_event(get_store(), get_settings(), delivery_id, event, payload)


@app.task(name="orchestrator.report_status", bind=True, max_retries=8)
def report_status(self: Task, service: str, task_id: int) -> str:
    """Create or edit the task's GitHub status comment; a failure here never fails the task."""
    from orchestrator.github import reporter

    try:
        return reporter.report_status(get_store(), get_settings(), service, int(task_id))
    except (reporter.ReportLater, StoreUnavailable) as exc:
        countdown = getattr(exc, "countdown", 5)
        if self.request.retries >= self.max_retries:
            log.warning("gave up reporting the status of %s/%s to GitHub: %s", service, task_id, exc)
            return "gave-up"
        raise self.retry(countdown=countdown, exc=exc) from None
def _runner() -> Any:
    from orchestrator.runners import get_runner

    return get_runner(get_settings())


@app.task(name="orchestrator.launch_run")
def launch_run(run_id: str) -> str | None:
    """Start a run's Job (or local process), or adopt it when it exists already."""
    return runs.launch(get_store(), get_settings(), _runner(), run_id)


@app.task(name="orchestrator.cancel_run")
def cancel_run(run_id: str) -> None:
    """Stop a run (delete its Job with its pods, or terminate its process group)."""
    runs.cancel(get_store(), _runner(), run_id)
