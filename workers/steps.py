"""Pipeline steps. Each one only unpacks ids and calls plain code that does the work."""

from __future__ import annotations

import socket
from typing import Any

from celery import Task

from orchestrator import pipeline, runtime
from orchestrator.settings import get_settings
from workers.app import app


@app.task(name="orchestrator.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self: Task) -> dict[str, Any]:
    """Answer which worker and queue took the message (liveness and routing checks)."""
    info = self.request.delivery_info or {}
    return {"hostname": self.request.hostname or socket.gethostname(), "queue": info.get("routing_key")}


@app.task(name="orchestrator.admit")
def admit(service: str, task_id: int) -> None:
    """Decide Blocked or Queued for the task and start waiting tasks as capacity allows."""
    pipeline.admit(runtime.get_store(), get_settings(), service, int(task_id))


@app.task(name="orchestrator.finish_run")
def finish_run(run_id: str) -> None:
    """Record the outcome of an ended run and move the tasks it affects."""
    pipeline.finish(runtime.get_store(), get_settings(), run_id)
