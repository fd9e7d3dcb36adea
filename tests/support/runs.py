"""Store set-up shared by the run tests: a task already in Launching with its run (through the state machine)."""

from __future__ import annotations

from typing import Any

from orchestrator.states import Status
from orchestrator.store import TaskStore


def launching_task(store: TaskStore, service: str = "billing", task_id: int = 1, *, attempt: int = 1,
                   stage: str | None = None, **spec: Any) -> str:
    """Create a task, walk it Pending -> Queued -> Preparing -> Launching with a run; return the run id."""
    full_spec = {"id": task_id, "service_name": service, "agent_name": "claude", "title": f"task {task_id}",
                 **spec}
    if store.get_task(service, task_id) is None:
        store.create_task(service=service, task_id=task_id, agent="claude", spec=full_spec, actor="pm@example.com")
    else:
        store.transition(service, task_id, Status.PENDING, reason="again", actor="test")
    store.transition(service, task_id, Status.QUEUED, reason="admitted", actor="test")
    run = store.create_run(service, task_id, version=1, attempt=attempt, stage=stage)
    store.transition(service, task_id, Status.PREPARING, reason="preparing", actor="test",
                     fields={"current_run": run.run_id})
    store.transition(service, task_id, Status.LAUNCHING, reason="workspace ready", actor="test")
    return run.run_id


class Sent:
    """A recording dispatcher (orchestrator.dispatch.Dispatcher): steps are recorded, never queued.

    A step sent with a store write is recorded only when the write is made (as
    a real dispatcher sends it only then). Also callable like `dispatch.send`,
    for the code that takes a `send` function. `install()` makes it this
    process's dispatcher (tests/conftest.py uninstalls it after each test).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.flat: list[tuple[Any, ...]] = []  # the same as (step, *args)
        self.countdowns: list[float | None] = []

    def send(self, step: str, *args: Any, write: Any = None, countdown: float | None = None,
             argsrepr: str | None = None) -> Any:
        written = write.apply(None) if write is not None else None
        if write is not None and not written:
            return written
        self.calls.append((step, args))
        self.flat.append((step, *args))
        self.countdowns.append(countdown)
        return written

    __call__ = send

    def install(self) -> Sent:
        from orchestrator import dispatch

        dispatch.install(self)
        return self

    def of(self, step: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == step]
