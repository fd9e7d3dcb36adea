"""Sending pipeline steps to their queues by name (the sender needs no step code)."""

from __future__ import annotations

from typing import Any

from kombu.exceptions import OperationalError

from orchestrator.store import StoreUnavailable

# Step names: the interface between who asks for work and who does it.
ADMIT = "orchestrator.admit"
PREPARE_WORKSPACE = "orchestrator.prepare_workspace"
LAUNCH_RUN = "orchestrator.launch_run"
FINISH_RUN = "orchestrator.finish_run"
CANCEL_RUN = "orchestrator.cancel_run"
HANDLE_EVENT = "orchestrator.handle_event"
CLEANUP_WORKSPACE = "orchestrator.cleanup_workspace"
REPORT_STATUS = "orchestrator.report_status"


class QueueUnavailable(StoreUnavailable):
    """The broker did not take the message."""


def send(step: str, *args: Any, countdown: float | None = None, argsrepr: str | None = None) -> None:
    """Queue one step; raise QueueUnavailable when the broker does not answer.

    `argsrepr` replaces the arguments as Flower shows them (a large payload
    would otherwise be repr'd into the message headers and the sent event).
    """
    from workers.app import app  # the Celery app is built on first use, not at import

    try:
        app.send_task(step, args=list(args), countdown=countdown, argsrepr=argsrepr,
                      retry=True, retry_policy={"max_retries": 2, "interval_start": 0.1,
                                                "interval_step": 0.2, "interval_max": 0.5})
    except OperationalError as exc:
        raise QueueUnavailable("the queue (Redis) does not answer") from exc
