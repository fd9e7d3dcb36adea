"""The pipeline's steps: each one's Celery name and queue, listed once.

The interface between who asks for work and who does it. Celery's routes and
the step decorators (workers/), the dispatcher, the API's queue metrics and
`orchestrator up` all read this list; no step or queue name is written
anywhere else.

A `Step` is a `str` (its Celery name), so it goes wherever a task name goes.
"""

from __future__ import annotations

from enum import Enum

# Every queue, in the order the README's "Queues" table lists them.
QUEUES: tuple[str, ...] = ("events", "coordination", "workspace", "deploy")

# Where a step without a route goes (and a probe sent without a queue).
DEFAULT_QUEUE = "coordination"


class Step(str, Enum):
    """One Celery task of the pipeline: `Step.ADMIT` is `"orchestrator.admit"`, queued on `Step.ADMIT.queue`."""

    queue: str

    def __new__(cls, name: str, queue: str) -> Step:
        member = str.__new__(cls, name)
        member._value_ = name
        member.queue = queue
        return member

    HANDLE_EVENT = "orchestrator.handle_event", "events"
    REPORT_STATUS = "orchestrator.report_status", "events"
    ADMIT = "orchestrator.admit", "coordination"
    FINISH_RUN = "orchestrator.finish_run", "coordination"
    PREPARE_WORKSPACE = "orchestrator.prepare_workspace", "workspace"
    CLEANUP_WORKSPACE = "orchestrator.cleanup_workspace", "workspace"
    DELIVER_RUN = "orchestrator.deliver_run", "workspace"
    LAUNCH_RUN = "orchestrator.launch_run", "deploy"
    CANCEL_RUN = "orchestrator.cancel_run", "deploy"
    # Not part of the pipeline: answers which worker and queue took it (liveness and routing checks).
    # Sent with an explicit queue to probe each one.
    PROBE = "orchestrator.probe", DEFAULT_QUEUE

    def __str__(self) -> str:
        return self.value


def routes() -> dict[str, str]:
    """Step name -> queue, as Celery's `task_routes` wants them."""
    return {step.value: step.queue for step in Step}
