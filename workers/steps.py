"""Pipeline steps. Each one only unpacks ids and calls plain code that does the work."""

from __future__ import annotations

import socket
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from orchestrator.runtime import get_store
from orchestrator.settings import get_settings
from orchestrator.store import StoreUnavailable
from orchestrator.workspace.cleanup import sweep
from orchestrator.workspace.pipeline import prepare_for_run
from workers.app import app


@app.task(name="orchestrator.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self: Task) -> dict[str, Any]:
    """Answer which worker and queue took the message (liveness and routing checks)."""
    info = self.request.delivery_info or {}
    return {"hostname": self.request.hostname or socket.gethostname(), "queue": info.get("routing_key")}


@app.task(name="orchestrator.prepare_workspace", bind=True, max_retries=None)
def prepare_workspace(self: Task, run_id: str) -> dict[str, Any]:
    """Prepare the run's workspace and hand the run to launch_run (see orchestrator.workspace.pipeline)."""

    # Busy lease and transient git failures come back as "retry" with a countdown;
    # the bounds live in the plain code, so the step itself retries without limit.
    try:
        result = prepare_for_run(get_settings(), get_store(), run_id, retries=self.request.retries or 0)
    except (StoreUnavailable, SoftTimeLimitExceeded) as exc:
        # Redis away or git too slow for the step: the task is still in Preparing, so try again later.
        raise self.retry(exc=exc, countdown=10, max_retries=30)
    if result.action == "retry":
        raise self.retry(countdown=result.countdown, max_retries=None)
    return {"action": result.action, "message": result.message}


@app.task(name="orchestrator.cleanup_workspace")
def cleanup_workspace() -> dict[str, Any]:
    """Sweep the task files of tasks that ended for good and record the workspace's disk use."""

    report = sweep(get_settings(), get_store())
    return {"removed": report.removed, "busy": report.busy, "disk_bytes": report.disk_bytes}
