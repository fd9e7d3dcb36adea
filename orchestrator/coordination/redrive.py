"""The reconcile loop's share of coordination: renew or reclaim capacity, re-send lost steps and events.

Every step is idempotent, so re-sending the step the store says is next is
always safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from orchestrator import dispatch
from orchestrator.coordination.admission import admit_waiting, reevaluate
from orchestrator.coordination.effects import release_run, send
from orchestrator.model import ACTIVE, ENDED_PHASES, Run, Status
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import LeaseNotHeld, TaskStore
from orchestrator.workspace import lease

log = logging.getLogger("orchestrator.coordination")


def redrive_stuck(
    store: TaskStore,
    settings: Settings,
    now: float | None = None,
    *,
    agent_gone: Callable[[Run], bool] | None = None,
    fence: tuple[str, str, int] | None = None,
) -> dict[str, list[str]]:
    """The reconcile loop's share of coordination: renew or reclaim slots, re-send lost steps.

    Every step is idempotent, so re-sending the step the store says is next
    is always safe; it is re-sent only when its message no longer waits in its
    queue, so a re-drive never doubles a delivery still on its way. Returns
    what it did.

    A run that is no longer its task's active one but whose agent may still be
    at work (superseded or cancelled, its pod still stopping) keeps its slot
    and worktree lease, renewed here (under the watcher's `fence`), until
    `agent_gone(run)` (the watcher's tracker) says nothing of it is left; then
    they are freed. Without `agent_gone` they lapse by their expiry.
    """
    now = time.time() if now is None else now
    done: dict[str, list[str]] = {
        "renewed": [],
        "released": [],
        "draining": [],
        "resent": [],
        "reevaluated": [],
        "queued": [],
    }

    # Reads in pipelined batches: with thousands of active runs, one round trip
    # per run and per reconcile would make the reconcile as long as its period.
    holders = store.slot_holders()
    held_runs = store.get_runs(holders)
    held_tasks = store.task_fields(
        [(r.service, r.task_id) if r else ("", 0) for r in held_runs], "current_run", "next_run"
    )
    renew: list[str] = []
    draining: list[Run] = []  # superseded or cancelled, their agent maybe still at work
    for (run_id, (_service, _expiry)), run, task in zip(holders.items(), held_runs, held_tasks):
        task = task if run else None
        if task and task.status in ACTIVE and task.current_run == run_id:
            renew.append(run_id)
        elif task and task.status == Status.QUEUED and task.next_run == run_id:
            pass  # an admission in flight (or interrupted): the walk below finishes it
        elif run is not None and run.agent_may_run and not (agent_gone is not None and agent_gone(run)):
            draining.append(run)
        else:
            if run is not None and run.agent_may_run:
                store.update_run(run_id, stopped_at=now)  # seen gone: its end is over for good
            release_run(store, run.service if run else _service, run_id, force=True)
            done["released"].append(run_id)
    if agent_gone is not None and draining:
        try:
            lease.renew_all(
                store,
                ((r.service, r.task_id, r.run_id) for r in draining),
                settings.workspace_lease_seconds,
                fence=fence,
            )
            renew += [r.run_id for r in draining]
        except LeaseNotHeld:
            log.warning("not renewing what stopping runs hold: the watcher lease passed to another holder")
    done["draining"] = [r.run_id for r in draining]
    store.renew_slots(renew, settings.slot_lease_seconds)
    done["renewed"].extend(renew)

    stale = now - settings.stuck_after_seconds
    for status in (Status.PENDING, Status.BLOCKED, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING):
        refs = store.task_refs_in_status(status)
        if status == Status.RUNNING:
            # A Running task matters here only when its run has ended (its finish may be
            # lost); the others are the watcher's. One script per thousand tasks finds
            # those, instead of reading every Running task and its run on every pass.
            rows = store.current_runs(refs, "phase")
            refs = [
                ref
                for ref, row in zip(refs, rows)
                if row and row[0] == status and row[2] and row[2].phase in ENDED_PHASES
            ]
        candidates: list[tuple[str, int, str]] = []  # stale tasks: (service, id, current run)
        for (service, task_id), task in zip(refs, store.task_fields(refs, "updated_at", "current_run")):
            if task is None or task.status != status or (task.updated_at or 0.0) > stale:
                continue
            if status in (Status.PENDING, Status.BLOCKED, Status.QUEUED):
                reevaluate(store, settings, service, task_id)
                done["reevaluated"].append(f"{service}/{task_id}")
                continue
            candidates.append((service, task_id, task.current_run or ""))
        stale_runs = store.get_runs(run_id for _, _, run_id in candidates if run_id)
        runs_by_id = {r.run_id: r for r in stale_runs if r and r.run_id}
        chosen: list[tuple[str, int, str, Step]] = []
        for service, task_id, run_id in candidates:
            run = runs_by_id.get(run_id) if run_id else None
            if run and run.phase in ENDED_PHASES:
                step = Step.FINISH_RUN  # the end was recorded but its finish message was lost
            elif status == Status.PREPARING:
                step = Step.PREPARE_WORKSPACE
            elif status == Status.LAUNCHING:
                step = Step.LAUNCH_RUN
            else:
                continue  # a Running run is the watcher's to observe
            if not run_id:
                continue
            chosen.append((service, task_id, run_id, step))
        # Stuck is not lost: with no worker consuming, the step's message still waits in its
        # queue, and a second one would be executed too when a worker comes. Re-send only
        # what the queue no longer holds (taken by a worker that died, or never queued).
        queued = store.queued_any((step.queue, step.value, run_id) for _, _, run_id, step in chosen)
        for service, task_id, run_id, step in chosen:
            if (step.value, run_id) in queued:
                done["queued"].append(f"{step}:{run_id}")
                continue
            send(step, run_id)
            # Touch the record so the same step is not re-sent on every pass.
            store.update_task(service, task_id, redriven_at=now)
            done["resent"].append(f"{step}:{run_id}")

    done["resent"].extend(redrive_events(store, settings, now))
    admit_waiting(store, settings)
    return done


# How often an accepted delivery's event is queued again before it is given up (logged).
MAX_EVENT_RESENDS = 5


def redrive_events(store: TaskStore, settings: Settings, now: float | None = None) -> list[str]:
    """Queue again the events of accepted webhook deliveries not acted on within the stuck threshold.

    The queue message of an event can be lost (a worker took it and lost its
    connection to Redis); the delivery was answered 202, so its event is kept
    in the store until handled and re-sent from there. handle_event skips a
    delivery already handled, so a late original changes nothing.
    """
    now = time.time() if now is None else now
    resent: list[str] = []
    for delivery, event, _body, times in store.pending_events(now - settings.stuck_after_seconds):
        if times >= MAX_EVENT_RESENDS:
            log.error(
                "github delivery %s (%s) was queued %d times and never handled; giving up", delivery, event, times + 1
            )
            store.drop_pending_event(delivery)
            continue
        try:
            dispatch.send(Step.HANDLE_EVENT, delivery, event)  # the worker reads the body from the store
        except dispatch.QueueUnavailable:
            log.warning("could not queue the event of delivery %s again; next reconcile", delivery)
            break
        store.requeued_pending_event(delivery, now)
        resent.append(f"{Step.HANDLE_EVENT}:{delivery}")
    return resent
