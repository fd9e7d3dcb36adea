"""Admission: decide Blocked or Queued for a waiting task, and start what capacity allows.

Every function here is idempotent: a step redelivered after a crash, or run
twice by two workers, changes nothing the first call did not. Each status
change is a compare-and-set in the store; whoever loses a race re-reads and
moves on. Nothing here waits for a run to end.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.coordination.effects import ACTOR, notify, release_run, send
from orchestrator.coordination.outputs import run_output_dir
from orchestrator.coordination.rules import admission_score, dependency_ids, dependency_state, find_cycle, format_cycle
from orchestrator.coordination.stages import find_stage, stages_of
from orchestrator.dispatch import Write
from orchestrator.metrics import registry as metrics
from orchestrator.model import StartResult, Task
from orchestrator.settings import Settings
from orchestrator.states import ACTIVE, TERMINAL, Status
from orchestrator.steps import Step
from orchestrator.store import IllegalTransition, TaskStore, run_id_for
from orchestrator.usage.budget import blocked_reason, spent_budget

# Statuses in which a task may be (or be about to be) in the admission index:
# only a task outside them is dropped from it, atomically.
_MAY_WAIT = (Status.PENDING, Status.BLOCKED, Status.QUEUED)
_CAS_ATTEMPTS = 5  # re-reads after losing a compare-and-set before leaving it to the re-drive


def next_run_fields(
    store: TaskStore,
    settings: Settings,
    task: Task,
    stage: str | None = None,
    *,
    retries: int = 0,
    not_before: float = 0.0,
    has_runs: bool = True,
) -> dict[str, Any]:
    """Fields naming the run the task will start when admitted (written with its move to Queued).

    `has_runs=False`: the caller knows the task has no recorded run (nothing to read).
    """
    service, task_id = task.service, task.id
    stages = stages_of(settings, task)
    if stage is None:
        stage = task.stage
    if stages and not find_stage(stages, stage):
        stage = stages[0].name  # a fresh start, or a pipeline whose stages were reconfigured
    if not stages:
        stage = ""
    version = task.context_version
    attempt = 1 + max(
        (
            r.attempt
            for r in (store.list_runs(service, task_id) if has_runs else ())
            if r.version == version and r.stage == stage
        ),
        default=0,
    )
    return {
        "stage": stage,
        "next_version": version,
        "next_attempt": attempt,
        "next_run": run_id_for(service, task_id, version, attempt, stage or None),
        "retries": retries,
        "not_before": not_before,
    }


def admission_score_of(settings: Settings, task: Task) -> float:
    """The task's place in the admission index (priority, age, and the configured ageing)."""
    return admission_score(task.priority, task.seq, task.created_at, settings.priority_ageing_seconds)


def reevaluate(
    store: TaskStore, settings: Settings, service: str, task_id: int, task: Task | None = None, *, has_runs: bool = True
) -> str | None:
    """Move a waiting task (Pending, Blocked, Queued) to Blocked or Queued; its status afterwards.

    `task` is its record when the caller has just read it, with `has_runs`
    whether it had a run then (the first decision uses them; a task that is
    not Queued gets no new run meanwhile).
    """
    for attempt in range(_CAS_ATTEMPTS):
        if attempt or task is None:
            task = store.get_task(service, task_id)
            has_runs = True
        if task is None:
            return None
        status = task.status
        if status not in (Status.PENDING, Status.BLOCKED, Status.QUEUED):
            return status.value
        if status == Status.PENDING and task.current_run:
            # Superseded by new context or restarted by a retry: the old run no longer counts.
            release_run(store, service, task.current_run)
        pipeline_name = task.spec.get("pipeline")
        try:
            if pipeline_name and not stages_of(settings, task):
                # Configuration changed since submission: say so rather than run the wrong agent.
                store.remove_waiting(service, task_id, keep=(Status.QUEUED,))
                store.transition(
                    service,
                    task_id,
                    Status.FAILED,
                    actor=ACTOR,
                    expect=status,
                    reason=f"pipeline {pipeline_name!r} is not configured",
                )
                notify(service, task_id)
                return Status.FAILED.value
            deps = dependency_state(store, service, task.spec)
            if not deps.satisfied:
                reason = deps.reason()
                cycle = find_cycle(store, service, task_id, dependency_ids(task.spec))
                if cycle:
                    reason = f"dependency cycle {format_cycle(cycle)}; {reason}"
                # A concurrent move to Queued is kept; this loop then sees it and re-indexes.
                store.remove_waiting(service, task_id, keep=(Status.QUEUED,))
                if status != Status.BLOCKED or task.status_reason != reason:
                    store.transition(service, task_id, Status.BLOCKED, reason=reason, actor=ACTOR, expect=status)
                    notify(service, task_id)
                return Status.BLOCKED.value
            spent = blocked_reason(store, settings, service)  # a daily budget: wait for the next day
            if spent:
                store.remove_waiting(service, task_id, keep=(Status.QUEUED,))
                if status != Status.BLOCKED or task.status_reason != spent:
                    store.transition(service, task_id, Status.BLOCKED, reason=spent, actor=ACTOR, expect=status)
                    notify(service, task_id)
                    if status != Status.BLOCKED:
                        metrics.budget_held(service)
                return Status.BLOCKED.value
            score = admission_score_of(settings, task)
            if status == Status.QUEUED:
                store.add_waiting(service, task_id, score)  # (an index entry of a task not Queued is dropped when met)
            else:
                # Indexed in the same atomic step as the move: never Queued without being findable.
                store.transition(
                    service,
                    task_id,
                    Status.QUEUED,
                    reason="waiting for capacity",
                    actor=ACTOR,
                    expect=status,
                    fields=next_run_fields(store, settings, task, has_runs=has_runs),
                    wait_score=score,
                )
                notify(service, task_id)
            return Status.QUEUED.value
        except IllegalTransition as exc:
            if not exc.conflict:
                return exc.current
            continue  # someone else moved it meanwhile: decide again from what it is now
    return None


def admit(store: TaskStore, settings: Settings, service: str, task_id: int) -> str | None:
    """Decide Blocked or Queued for a waiting task, start what capacity allows; tidy up after an ended one.

    Returns the status this call left the task in (None when there is no such task).
    """
    task, dependents, has_runs = store.get_task_with_links(service, task_id)
    if task is None:
        return None
    status = task.status
    if status in TERMINAL:
        # Cancelled (or ended without finish): its capacity is free, and the
        # tasks that wait for it may move (on, or to Blocked with the reason).
        store.remove_waiting(service, task_id, keep=_MAY_WAIT)
        if task.current_run:
            release_run(store, service, task.current_run)
        reevaluate_dependents(store, settings, service, task_id, dependents)
        admit_waiting(store, settings)
        return status.value
    if status in ACTIVE:
        return status.value  # its run is under way; re-sending its step is the re-drive's business
    was_pending = status == Status.PENDING
    result = reevaluate(store, settings, service, task_id, task, has_runs=has_runs)
    if was_pending:
        # A retried task: its dependents blocked on its failure now wait for it again.
        # (A dependent submitted after the read above is admitted by its own step.)
        reevaluate_dependents(store, settings, service, task_id, dependents)
    started = _admit_waiting(store, settings)
    # What this call left it in, without reading the task once more.
    if result == Status.QUEUED.value and (service, task_id) in started:
        return Status.PREPARING.value
    return result


def reevaluate_dependents(
    store: TaskStore, settings: Settings, service: str, task_id: int, dependents: list[int] | None = None
) -> None:
    for dependent in store.dependents_of(service, task_id) if dependents is None else dependents:
        reevaluate(store, settings, service, dependent)


def admit_waiting(store: TaskStore, settings: Settings) -> list[str]:
    """Start waiting tasks while capacity allows, highest priority and oldest first; the run ids started.

    A service at its own limit does not hold back the others; the global
    limit stops the walk.
    """
    return list(_admit_waiting(store, settings).values())


def _admit_waiting(store: TaskStore, settings: Settings) -> dict[tuple[str, int], str]:
    """`admit_waiting`: (service, task id) -> run id of each task it started."""
    started: dict[tuple[str, int], str] = {}
    for _ in range(3):
        full: set[str] = set()
        now = time.time()
        freed = False
        for service, task_id in store.waiting():
            if service in full:
                continue
            outcome, run_id = _try_start(store, settings, service, task_id, now)
            if outcome == StartResult.GLOBAL_FULL:
                break
            if outcome == StartResult.SERVICE_FULL:
                full.add(service)
            elif outcome == StartResult.RELEASED:
                freed = True
            elif outcome == StartResult.STARTED:
                started[(service, task_id)] = run_id
        if not freed:
            break
        # A slot taken for a task that moved away was given back; walkers that
        # met it taken may have passed over a task, so walk again.
    return started


def _try_start(store: TaskStore, settings: Settings, service: str, task_id: int, now: float) -> tuple[StartResult, str]:
    """What the walk did with the task, and the run id it meant to start ('' when it had none)."""
    task = store.get_task(service, task_id)
    if task is None or task.status != Status.QUEUED or not task.next_run:
        # Pending or Blocked ones are moving (their admission indexes them first); keep those.
        store.remove_waiting(service, task_id, keep=_MAY_WAIT)
        return StartResult.GONE, ""
    run_id = task.next_run
    if task.not_before > now:
        return StartResult.LATER, run_id  # backing off before a retry
    spent = spent_budget(store, settings, service, now)
    if spent:  # spent while it waited: it waits Blocked until the next day (or a higher budget)
        try:
            store.transition(
                service, task_id, Status.BLOCKED, reason=spent[0], actor=ACTOR, expect=Status.QUEUED, unwait=True
            )
            notify(service, task_id)
            metrics.budget_held(service)
        except IllegalTransition:
            pass
        return (StartResult.GLOBAL_FULL if spent[1] else StartResult.SERVICE_FULL), run_id
    version, attempt = task.next_version or task.context_version, task.next_attempt or 1
    stage_name = task.stage
    # The run record comes first: a slot is then always traceable to its run.
    store.create_run(
        service, task_id, version=version, attempt=attempt, stage=stage_name or None, runner=settings.runner
    )
    code = store.acquire_slot(
        run_id,
        service,
        lease_seconds=settings.slot_lease_seconds,
        global_limit=settings.max_active_runs,
        service_limit=settings.max_runs_per_service,
    )
    if code == 0:
        return StartResult.GLOBAL_FULL, run_id
    if code < 0:
        return StartResult.SERVICE_FULL, run_id
    stage = find_stage(stages_of(settings, task), stage_name)
    previous = task.outputs
    run_fields = {
        "agent": stage.agent if stage else task.agent,
        "image": stage.image if stage else "",
        "prompt": stage.prompt if stage else "",
        "output_dir": run_output_dir(service, task_id, run_id),
        "inputs": {k: previous[k] for k in ("branch", "pull_request_url", "handoff_file") if previous.get(k)},
    }
    # The run's fields, the move to Preparing, leaving the admission index and
    # the prepare_workspace message are one atomic step (when the queue is on
    # the store's Redis): one round trip instead of four on the admission's path.
    try:
        send(
            Step.PREPARE_WORKSPACE,
            run_id,
            write=Write(
                store,
                lambda enqueue: store.transition(
                    service,
                    task_id,
                    Status.PREPARING,
                    reason=f"admitted as run {run_id}",
                    actor=ACTOR,
                    expect=Status.QUEUED,
                    expect_fields={"next_run": run_id},
                    fields={"current_run": run_id},
                    run_fields=(run_id, run_fields),
                    unwait=True,
                    enqueue=enqueue,
                ),
            ),
        )
    except IllegalTransition:
        current = store.get_task(service, task_id)
        if not (current and current.current_run == run_id and current.status in ACTIVE):
            if store.release_slot(run_id):  # the task moved away (cancelled, new context) before it started
                return StartResult.RELEASED, run_id
        return StartResult.RACED, run_id
    notify(service, task_id)
    return StartResult.STARTED, run_id
