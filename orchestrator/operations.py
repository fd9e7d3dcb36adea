"""What a PM (over REST or the command line) or a GitHub event can ask of a task.

Each operation writes the store first and queues the next step second: an
answer never claims work that was not stored. When queueing fails after the
write, the task sits in a waiting status and the reconcile loop re-drives it.
Steps go through the `dispatcher` given (the API passes its own), else this
process's (`orchestrator.dispatch.current()`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestrator import dispatch, tracing
from orchestrator.coordination.rules import dependency_ids, find_cycle, format_cycle
from orchestrator.dispatch import Dispatcher, Enqueue, Write
from orchestrator.github.reporter import notify_status
from orchestrator.model import Task
from orchestrator.states import ACTIVE, CANCELLABLE_FROM, RETRYABLE_FROM, TERMINAL, Status
from orchestrator.steps import Step
from orchestrator.store import IllegalTransition, TaskStore, Transition

log = logging.getLogger("orchestrator.operations")


class OperationRefused(Exception):
    """The state machine does not allow the operation now (HTTP 409)."""


class DependencyCycle(OperationRefused):
    """The submission's dependencies would close a cycle with stored tasks (HTTP 409)."""

    code = "dependency_cycle"

    def __init__(self, service: str, cycle: list[int]):
        self.service, self.cycle = service, cycle
        super().__init__(f"dependencies would form a cycle in service {service}: {format_cycle(cycle)}")


def _queue(dispatcher: Dispatcher | None, step: Step, *args: Any) -> None:
    try:
        (dispatcher or dispatch.current()).send(step, *args)
    except dispatch.QueueUnavailable:
        # Stored but not queued: the reconcile loop picks the task up later.
        log.warning("could not queue %s for %s; the reconcile loop will re-drive it", step, args)


def submit_task(
    store: TaskStore,
    spec: Mapping[str, Any],
    *,
    actor: str,
    origin: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    idempotency_ttl: int = 86400,
    idempotency_value: Any = None,
    dispatcher: Dispatcher | None = None,
) -> Task:
    """Store a validated task in Pending and queue its admission. Raises TaskExists or DependencyCycle."""
    service, task_id = spec["service_name"], int(spec["id"])
    dependencies = dependency_ids(spec)
    cycle = find_cycle(store, service, task_id, dependencies)
    if cycle:
        raise DependencyCycle(service, cycle)
    # One atomic step writes the task, the reverse edges of its dependencies (so
    # a dependency that ends from now on finds it among its dependents) and, when
    # the broker is this Redis, its admission message: stored and queued, or nothing.
    write = Write(
        store,
        lambda enqueue: store.create_task(
            service=service,
            task_id=task_id,
            agent=spec["agent_name"],
            spec=spec,
            priority=spec.get("priority", "medium"),
            actor=actor,
            origin=origin,
            idempotency_key=idempotency_key,
            idempotency_ttl=idempotency_ttl,
            idempotency_value=idempotency_value,
            dependencies=dependencies,
            enqueue=enqueue,
            # The trace of this submission (a request, a webhook's step) becomes the task's.
            trace_parent=tracing.current_traceparent(),
        ),
    )
    try:
        return (dispatcher or dispatch.current()).send(Step.ADMIT, service, task_id, write=write)
    except dispatch.QueueUnavailable:
        # Stored but not queued: the reconcile loop picks the task up later.
        log.warning("could not queue %s for %s/%s; the reconcile loop will re-drive it", Step.ADMIT, service, task_id)
        return store.require_task(service, task_id)


CANCEL_ATTEMPTS = 10


def cancel_task(
    store: TaskStore, service: str, task_id: int, *, actor: str, reason: str = "", dispatcher: Dispatcher | None = None
) -> Task:
    """Cancel a task that has not ended; stop its run when one is active."""
    # The pipeline moves a task on by itself (Queued -> Preparing...). A cancel that
    # loses such a race reads the task again rather than refusing the PM: only an
    # ended task is a real conflict.
    for _ in range(CANCEL_ATTEMPTS):
        task = store.require_task(service, task_id)
        if task.status not in CANCELLABLE_FROM:
            raise OperationRefused(f"task {service}/{task_id} already ended ({task.status}); nothing to cancel")

        def record(enqueue: Enqueue | None, seen: Task = task) -> Transition:
            return store.transition(
                service,
                task_id,
                Status.CANCELLED,
                reason=reason or f"cancelled by {actor}",
                actor=actor,
                expect=seen.status,
                enqueue=enqueue,
            )

        try:
            if task.status in ACTIVE and task.current_run:
                # Recorded and its stop queued in one script: a process that dies right after
                # the cancel cannot leave the run's agent working with nobody to stop it.
                (dispatcher or dispatch.current()).send(Step.CANCEL_RUN, task.current_run, write=Write(store, record))
            else:
                record(None)
            break
        except IllegalTransition as exc:
            if not exc.conflict:
                raise OperationRefused(str(exc)) from None
        except dispatch.QueueUnavailable:
            log.warning("could not queue %s for %s; its agent runs until it ends", Step.CANCEL_RUN, task.current_run)
            break
    else:
        raise OperationRefused(f"task {service}/{task_id} keeps changing; try the cancel again")
    _queue(dispatcher, Step.ADMIT, service, task_id)  # dependents and waiting tasks may move now
    return _reported(store, service, task_id, dispatcher)


def retry_task(
    store: TaskStore, service: str, task_id: int, *, actor: str, dispatcher: Dispatcher | None = None
) -> Task:
    """Start a failed or cancelled task again."""
    task = store.require_task(service, task_id)
    if task.status not in RETRYABLE_FROM:
        raise OperationRefused(
            f"task {service}/{task_id} is {task.status}; only Failed or Cancelled tasks can be retried"
        )
    try:
        store.transition(
            service, task_id, Status.PENDING, reason=f"retry requested by {actor}", actor=actor, expect=task.status
        )
    except IllegalTransition as exc:
        raise OperationRefused(str(exc)) from None
    _queue(dispatcher, Step.ADMIT, service, task_id)
    return _reported(store, service, task_id, dispatcher)


def add_context(
    store: TaskStore,
    service: str,
    task_id: int,
    document: Mapping[str, Any],
    *,
    actor: str,
    dispatcher: Dispatcher | None = None,
) -> Task:
    """Add a context document: bump the version, supersede the active run, start again."""
    task = store.require_task(service, task_id)
    version = store.add_context(service, task_id, document)
    status = task.status
    if status in ACTIVE and task.current_run:
        _queue(dispatcher, Step.CANCEL_RUN, task.current_run)

    if status != Status.PENDING:
        try:
            store.transition(
                service, task_id, Status.PENDING, reason=f"context v{version} added by {actor}", actor=actor
            )
        except IllegalTransition:
            pass  # another writer moved it meanwhile; admission reads the new version anyway
    _queue(dispatcher, Step.ADMIT, service, task_id)
    return _reported(store, service, task_id, dispatcher)


def _reported(store: TaskStore, service: str, task_id: int, dispatcher: Dispatcher | None) -> Task:
    """The task as it is now, its GitHub status comment (if it came from GitHub) queued for an edit.

    Cancel, retry and new context come over REST as well as from GitHub: either way the
    issue's comment must not keep showing the state before.
    """
    task = store.require_task(service, task_id)
    notify_status(service, task_id, store=store, task=task, dispatcher=dispatcher)
    return task


__all__ = ["OperationRefused", "DependencyCycle", "submit_task", "cancel_task", "retry_task", "add_context", "TERMINAL"]
