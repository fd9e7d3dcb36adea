"""Pipeline steps. Each one only unpacks ids and calls plain code that does the work."""

from __future__ import annotations

import socket
from typing import Any

from celery import Task

from workers.app import app


@app.task(name="orchestrator.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self: Task) -> dict[str, Any]:
    """Answer which worker and queue took the message (liveness and routing checks)."""
    info = self.request.delivery_info or {}
    return {"hostname": self.request.hostname or socket.gethostname(), "queue": info.get("routing_key")}
