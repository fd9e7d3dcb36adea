"""Pipeline steps. Each one only unpacks ids and calls plain code that does the work."""

from __future__ import annotations

import socket
from typing import Any

from celery import Task

from orchestrator import runs
from orchestrator.runtime import get_store
from orchestrator.settings import get_settings
from workers.app import app


@app.task(name="orchestrator.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self: Task) -> dict[str, Any]:
    """Answer which worker and queue took the message (liveness and routing checks)."""
    info = self.request.delivery_info or {}
    return {"hostname": self.request.hostname or socket.gethostname(), "queue": info.get("routing_key")}


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
