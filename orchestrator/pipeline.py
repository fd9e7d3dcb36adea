"""The plain code behind the coordination steps: admit, finish, and the re-drive of stuck tasks.

Every function here is idempotent: a step redelivered after a crash, or run
twice by two workers, changes nothing the first call did not. Each status
change is a compare-and-set in the store; whoever loses a race re-reads and
moves on. Nothing here waits for a run to end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from orchestrator import dispatch
from orchestrator.logs import bounded_excerpt, scrub
from orchestrator.coordination import (
    admission_score,
    dependency_ids,
    dependency_state,
    find_cycle,
    find_stage,
    format_cycle,
    next_stage,
    read_outputs,
    run_output_dir,
    stages_of,
)
from orchestrator.settings import Settings
from orchestrator.states import ACTIVE, TERMINAL, Status
from orchestrator.store import IllegalTransition, TaskStore, run_id_for

log = logging.getLogger("orchestrator.pipeline")

ACTOR = "coordination"
# Statuses in which a task may be (or be about to be) in the admission index:
# only a task outside them is dropped from it, atomically.
_MAY_WAIT = (Status.PENDING, Status.BLOCKED, Status.QUEUED)
ENDED_PHASES = ("Succeeded", "Failed")
_TRUE = ("1", "true", "True", "yes")
_CAS_ATTEMPTS = 5  # re-reads after losing a compare-and-set before leaving it to the re-drive


def _send(step: str, *args: Any, countdown: float | None = None) -> None:
    try:
        dispatch.send(step, *args, countdown=countdown)
    except dispatch.QueueUnavailable:
        # The store already says what should happen; the re-drive re-sends it.
        log.warning("could not queue %s%s; the reconcile loop will re-drive it", step, args)


def _release_run(store: TaskStore, service: str, run_id: str) -> bool:
    """Free the run's capacity slot and its workspace lease; True when a slot was held."""
    released = store.release_slot(run_id)
    try:
        from orchestrator.workspace import lock
    except ImportError:
        return released
    try:
        lock.release(store, service, run_id)
    except Exception:  # the lease expires by itself; a release failure must not fail the outcome
        log.exception("could not release the workspace lease of run %s", run_id)
    return released


def _notify(service: str, task_id: int) -> None:
    """Report the task's status to its GitHub issue or pull request; never fails the task."""
    try:
        from orchestrator.github import reporter
    except ImportError:
        return
    try:
        reporter.notify_status(service, task_id)
    except Exception:
        log.exception("reporting task %s/%s to GitHub failed", service, task_id)


def _next_run_fields(store: TaskStore, settings: Settings, task: Mapping[str, Any], stage: str | None = None,
                     *, retries: int = 0, not_before: float = 0.0, has_runs: bool = True) -> dict[str, Any]:
    """Fields naming the run the task will start when admitted (written with its move to Queued).

    `has_runs=False`: the caller knows the task has no recorded run (nothing to read).
    """
    service, task_id = task["service"], int(task["id"])
    stages = stages_of(settings, task)
    if stage is None:
        stage = task.get("stage") or ""
    if stages and not find_stage(stages, stage):
        stage = stages[0].name  # a fresh start, or a pipeline whose stages were reconfigured
    if not stages:
        stage = ""
    version = int(task["context_version"])
    attempt = 1 + max(
        (r["attempt"] for r in (store.list_runs(service, task_id) if has_runs else ())
         if r["version"] == version and (r.get("stage") or "") == stage),
        default=0,
    )
    return {
        "stage": stage, "next_version": version, "next_attempt": attempt,
        "next_run": run_id_for(service, task_id, version, attempt, stage or None),
        "retries": retries, "not_before": not_before,
    }


# Admission -------------------------------------------------------------------------------


def _admission_score(settings: Settings, task: Mapping[str, Any]) -> float:
    """The task's place in the admission index (priority, age, and the configured ageing)."""
    return admission_score(task.get("priority"), int(task.get("seq") or 0), task.get("created_at"),
                           settings.priority_ageing_seconds)


def _reevaluate(store: TaskStore, settings: Settings, service: str, task_id: int,
                task: dict[str, Any] | None = None, *, has_runs: bool = True) -> str | None:
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
        status = Status(task["status"])
        if status not in (Status.PENDING, Status.BLOCKED, Status.QUEUED):
            return status.value
        if status == Status.PENDING and task.get("current_run"):
            # Superseded by new context or restarted by a retry: the old run no longer counts.
            _release_run(store, service, task["current_run"])
        pipeline_name = (task.get("spec") or {}).get("pipeline")
        try:
            if pipeline_name and not stages_of(settings, task):
                # Configuration changed since submission: say so rather than run the wrong agent.
                store.remove_waiting(service, task_id, keep=(Status.QUEUED,))
                store.transition(service, task_id, Status.FAILED, actor=ACTOR, expect=status,
                                 reason=f"pipeline {pipeline_name!r} is not configured")
                return Status.FAILED.value
            deps = dependency_state(store, service, task["spec"])
            if not deps.satisfied:
                reason = deps.reason()
                cycle = find_cycle(store, service, task_id, dependency_ids(task["spec"]))
                if cycle:
                    reason = f"dependency cycle {format_cycle(cycle)}; {reason}"
                # A concurrent move to Queued is kept; this loop then sees it and re-indexes.
                store.remove_waiting(service, task_id, keep=(Status.QUEUED,))
                if status != Status.BLOCKED or task.get("status_reason") != reason:
                    store.transition(service, task_id, Status.BLOCKED, reason=reason, actor=ACTOR, expect=status)
                return Status.BLOCKED.value
            score = _admission_score(settings, task)
            if status == Status.QUEUED:
                store.add_waiting(service, task_id, score)  # (an index entry of a task not Queued is dropped when met)
            else:
                # Indexed in the same atomic step as the move: never Queued without being findable.
                store.transition(service, task_id, Status.QUEUED, reason="waiting for capacity", actor=ACTOR,
                                 expect=status, fields=_next_run_fields(store, settings, task, has_runs=has_runs),
                                 wait_score=score)
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
    status = Status(task["status"])
    if status in TERMINAL:
        # Cancelled (or ended without finish): its capacity is free, and the
        # tasks that wait for it may move (on, or to Blocked with the reason).
        store.remove_waiting(service, task_id, keep=_MAY_WAIT)
        if task.get("current_run"):
            _release_run(store, service, task["current_run"])
        _reevaluate_dependents(store, settings, service, task_id, dependents)
        admit_waiting(store, settings)
        return status.value
    if status in ACTIVE:
        return status.value  # its run is under way; re-sending its step is the re-drive's business
    was_pending = status == Status.PENDING
    result = _reevaluate(store, settings, service, task_id, task, has_runs=has_runs)
    if was_pending:
        # A retried task: its dependents blocked on its failure now wait for it again.
        # (A dependent submitted after the read above is admitted by its own step.)
        _reevaluate_dependents(store, settings, service, task_id, dependents)
    if result == Status.FAILED.value:
        _notify(service, task_id)
    started = _admit_waiting(store, settings)
    # What this call left it in, without reading the task once more.
    if result == Status.QUEUED.value and (service, task_id) in started:
        return Status.PREPARING.value
    return result


def _reevaluate_dependents(store: TaskStore, settings: Settings, service: str, task_id: int,
                           dependents: list[int] | None = None) -> None:
    for dependent in store.dependents_of(service, task_id) if dependents is None else dependents:
        _reevaluate(store, settings, service, dependent)


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
            outcome = _try_start(store, settings, service, task_id, now)
            if outcome == "global-full":
                break
            if outcome == "service-full":
                full.add(service)
            elif outcome == "released":
                freed = True
            elif outcome.startswith("run:"):
                started[(service, task_id)] = outcome[4:]
        if not freed:
            break
        # A slot taken for a task that moved away was given back; walkers that
        # met it taken may have passed over a task, so walk again.
    return started


def _try_start(store: TaskStore, settings: Settings, service: str, task_id: int, now: float) -> str:
    task = store.get_task(service, task_id)
    if task is None or task["status"] != Status.QUEUED.value or not task.get("next_run"):
        # Pending or Blocked ones are moving (their admission indexes them first); keep those.
        store.remove_waiting(service, task_id, keep=_MAY_WAIT)
        return "gone"
    if float(task.get("not_before") or 0) > now:
        return "later"  # backing off before a retry
    version, attempt = int(task["next_version"]), int(task["next_attempt"])
    stage_name = task.get("stage") or ""
    run_id = task["next_run"]
    # The run record comes first: a slot is then always traceable to its run.
    store.create_run(service, task_id, version=version, attempt=attempt, stage=stage_name or None,
                     runner=settings.runner)
    code = store.acquire_slot(run_id, service, lease_seconds=settings.slot_lease_seconds,
                              global_limit=settings.max_active_runs, service_limit=settings.max_runs_per_service)
    if code == 0:
        return "global-full"
    if code < 0:
        return "service-full"
    stage = find_stage(stages_of(settings, task), stage_name)
    previous = task.get("outputs") or {}
    run_fields = {
        "agent": stage.agent if stage else task["agent"],
        "image": stage.image if stage else "",
        "prompt": stage.prompt if stage else "",
        "output_dir": run_output_dir(service, task_id, run_id),
        "inputs": {k: previous[k] for k in ("branch", "pull_request_url", "handoff_file") if previous.get(k)},
    }
    # The run's fields, the move to Preparing, leaving the admission index and
    # the prepare_workspace message are one atomic step (when the queue is on
    # the store's Redis): four round trips were half of the admission's time.
    bound = dispatch.bound_to(store)
    try:
        store.transition(service, task_id, Status.PREPARING, reason=f"admitted as run {run_id}", actor=ACTOR,
                         expect=Status.QUEUED, expect_fields={"next_run": run_id},
                         fields={"current_run": run_id}, run_fields=(run_id, run_fields), unwait=True,
                         enqueue=dispatch.prepare(dispatch.PREPARE_WORKSPACE, run_id).enqueue() if bound else None)
    except IllegalTransition:
        current = store.get_task(service, task_id)
        if not (current and current.get("current_run") == run_id and current["status"] in ACTIVE_VALUES):
            if store.release_slot(run_id):  # the task moved away (cancelled, new context) before it started
                return "released"
        return "raced"
    if not bound:
        _send(dispatch.PREPARE_WORKSPACE, run_id)
    return f"run:{run_id}"


ACTIVE_VALUES = frozenset(s.value for s in ACTIVE)


# Outcome -----------------------------------------------------------------------------------


def finish(store: TaskStore, settings: Settings, run_id: str) -> str:
    """Record the outcome of an ended run: Succeeded, Failed, a retry, or the next pipeline stage.

    Reads the observation the watcher recorded on the run (phase, exit_code,
    failure_reason, retryable, outputs) and the outputs the agent wrote in the
    workspace. Returns what it did, for logs and tests.
    """
    run = store.get_run(run_id)
    if run is None:
        store.release_slot(run_id)
        return "no-run"
    service, task_id = run["service"], int(run["task_id"])
    task = store.get_task(service, task_id)
    if task is None:
        _release_run(store, service, run_id)
        return "no-task"
    status = Status(task["status"])
    if task.get("current_run") != run_id or status not in ACTIVE:
        # Finished already (a redelivery), cancelled, or superseded by new
        # context: only make sure the run's capacity is free.
        if _release_run(store, service, run_id):
            admit_waiting(store, settings)
        return "not-current"
    if run.get("phase") not in ENDED_PHASES:
        return "not-ended"  # the watcher records the end before it sends finish

    outputs = dict(run.get("outputs") or {})
    # What the agent wrote is shown and kept: never with a secret in it (the agent holds two).
    secrets = settings.secret_values()
    outputs.update({key: scrub(value, secrets) if isinstance(value, str) else value for key, value
                    in read_outputs(settings.workspace_root / service, service, task_id, run_id).items()})
    for key in ("branch", "commit"):  # what prepare_workspace recorded, unless the agent said otherwise
        if run.get(key) and not outputs.get(key):
            outputs[key] = run[key]
    if not outputs.get("log_tail"):
        tail = _log_tail(settings, run_id)
        if tail:
            outputs["log_tail"] = tail
    if outputs != (run.get("outputs") or {}):
        store.update_run(run_id, outputs=outputs)
    stage = run.get("stage") or ""
    task_outputs = _merge_outputs(task.get("outputs") or {}, outputs, run, stage)
    now = time.time()

    if run["phase"] == "Succeeded":
        following = next_stage(stages_of(settings, task), stage) if stage else None
        if following is not None:
            fields = _next_run_fields(store, settings, task, following.name)
            fields["outputs"] = task_outputs
            target, reason = Status.QUEUED, f"stage {stage} succeeded; stage {following.name} waiting for capacity"
        else:
            fields = {"outputs": task_outputs, "stage": ""}
            target = Status.SUCCEEDED
            reason = f"pipeline completed (run {run_id})" if stage else f"run {run_id} succeeded"
    else:
        retryable = str(run.get("retryable", "")) in _TRUE
        retries = int(task.get("retries") or 0)
        why = run.get("failure_reason") or (
            f"agent exited with code {run['exit_code']}" if run.get("exit_code") not in (None, "") else "failed"
        )
        if retryable and retries < settings.max_retries:
            delay = settings.retry_backoff_seconds * (2 ** retries)
            fields = _next_run_fields(store, settings, task, stage, retries=retries + 1, not_before=now + delay)
            fields["outputs"] = task_outputs
            target = Status.QUEUED
            reason = f"run {run_id} failed ({why}); retry {retries + 1} of {settings.max_retries} in {delay:g}s"
        else:
            fields = {"outputs": task_outputs}
            target = Status.FAILED
            gave_up = f" after {retries} retries" if retryable and retries else ""
            reason = (f"stage {stage} failed: {why}{gave_up}" if stage else f"run {run_id} failed: {why}{gave_up}")
    try:
        store.transition(service, task_id, target, reason=reason, actor=ACTOR, expect=status,
                         expect_fields={"current_run": run_id}, fields=fields)
    except IllegalTransition:
        # Cancelled or given new context meanwhile; that path owns the task now.
        if _release_run(store, service, run_id):
            admit_waiting(store, settings)
        return "raced"
    _release_run(store, service, run_id)
    if target == Status.QUEUED:
        task_after = store.require_task(service, task_id)
        store.add_waiting(service, task_id, _admission_score(settings, task_after))
        if fields.get("not_before"):
            # Wake the admission when the backoff is over (the re-drive would too, later).
            _send(dispatch.ADMIT, service, task_id, countdown=max(0.0, fields["not_before"] - time.time()))
    else:
        _notify(service, task_id)
        _reevaluate_dependents(store, settings, service, task_id)
    admit_waiting(store, settings)
    return target.value


LOG_TAIL_LINES = 20


def _log_tail(settings: Settings, run_id: str) -> str:
    """The run's last output lines from its runner, secrets blanked; '' when they cannot be had.

    The watcher usually records them as the run's `log_tail` output; this is
    the fallback, and it never fails the outcome.
    """
    try:
        from orchestrator.runners import get_runner
    except ImportError:
        return ""
    try:
        # One line more than kept: the first may end a secret that began before it, and is dropped
        # once it has served to mask that.
        lines = list(get_runner(settings).logs(run_id, tail=LOG_TAIL_LINES + 1))[-LOG_TAIL_LINES - 1:]
    except Exception:
        log.info("no output lines for run %s", run_id, exc_info=True)
        return ""
    return bounded_excerpt(lines, settings.secret_values(), LOG_TAIL_LINES)


def _merge_outputs(previous: Mapping[str, Any], outputs: Mapping[str, Any], run: Mapping[str, Any],
                   stage: str) -> dict[str, Any]:
    """The task's outputs after this run: the newest known values, and each stage's own."""
    merged = dict(previous)
    for key in ("pull_request_url", "branch", "summary", "commit", "handoff_file", "log_tail"):
        if outputs.get(key):
            merged[key] = outputs[key]
    merged["run_id"] = run["run_id"]
    merged["exit_code"] = run.get("exit_code") if run.get("exit_code") != "" else None
    if stage:
        stages = dict(merged.get("stages") or {})
        stages[stage] = {k: v for k, v in outputs.items() if k != "log_tail"}
        merged["stages"] = stages
    return merged


# Re-drive ---------------------------------------------------------------------------------


def redrive_stuck(store: TaskStore, settings: Settings, now: float | None = None) -> dict[str, list[str]]:
    """The reconcile loop's share of coordination: renew or reclaim slots, re-send lost steps.

    Every step is idempotent, so re-sending the step the store says is next
    is always safe. Returns what it did.
    """
    now = time.time() if now is None else now
    done: dict[str, list[str]] = {"renewed": [], "released": [], "resent": [], "reevaluated": []}

    # Reads in pipelined batches: with thousands of active runs, one round trip
    # per run and per reconcile would make the reconcile as long as its period.
    holders = store.slot_holders()
    held_runs = store.get_runs(holders)
    held_tasks = store.task_fields([(r["service"], int(r["task_id"])) if r else ("", 0) for r in held_runs],
                                   "current_run", "next_run")
    renew: list[str] = []
    for (run_id, (_service, _expiry)), run, task in zip(holders.items(), held_runs, held_tasks):
        task = task if run else None
        if task and task["status"] in ACTIVE_VALUES and task.get("current_run") == run_id:
            renew.append(run_id)
        elif task and task["status"] == Status.QUEUED.value and task.get("next_run") == run_id:
            pass  # an admission in flight (or interrupted): the walk below finishes it
        else:
            _release_run(store, run["service"] if run else _service, run_id)
            done["released"].append(run_id)
    store.renew_slots(renew, settings.slot_lease_seconds)
    done["renewed"].extend(renew)

    stale = now - settings.stuck_after_seconds
    for status in (Status.PENDING, Status.BLOCKED, Status.QUEUED, Status.PREPARING, Status.LAUNCHING,
                   Status.RUNNING):
        refs = store.task_refs_in_status(status)
        if status == Status.RUNNING:
            # A Running task matters here only when its run has ended (its finish may be
            # lost); the others are the watcher's. One script per thousand tasks finds
            # those, instead of reading every Running task and its run on every pass.
            rows = store.current_runs(refs, "phase")
            refs = [ref for ref, row in zip(refs, rows)
                    if row and row[0] == status.value and row[2] and row[2].get("phase") in ENDED_PHASES]
        candidates: list[tuple[str, int, str]] = []  # stale tasks: (service, id, current run)
        for (service, task_id), task in zip(refs, store.task_fields(refs, "updated_at", "current_run")):
            if task is None or task["status"] != status.value or float(task["updated_at"] or 0) > stale:
                continue
            if status in (Status.PENDING, Status.BLOCKED, Status.QUEUED):
                _reevaluate(store, settings, service, task_id)
                done["reevaluated"].append(f"{service}/{task_id}")
                continue
            candidates.append((service, task_id, task.get("current_run") or ""))
        stale_runs = store.get_runs(run_id for _, _, run_id in candidates if run_id)
        runs_by_id = {r["run_id"]: r for r in stale_runs if r and r.get("run_id")}
        for service, task_id, run_id in candidates:
            run = runs_by_id.get(run_id) if run_id else None
            if run and run.get("phase") in ENDED_PHASES:
                step = dispatch.FINISH_RUN  # the end was recorded but its finish message was lost
            elif status == Status.PREPARING:
                step = dispatch.PREPARE_WORKSPACE
            elif status == Status.LAUNCHING:
                step = dispatch.LAUNCH_RUN
            else:
                continue  # a Running run is the watcher's to observe
            if not run_id:
                continue
            _send(step, run_id)
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
            log.error("github delivery %s (%s) was queued %d times and never handled; giving up",
                      delivery, event, times + 1)
            store.drop_pending_event(delivery)
            continue
        try:
            dispatch.send(dispatch.HANDLE_EVENT, delivery, event)  # the worker reads the body from the store
        except dispatch.QueueUnavailable:
            log.warning("could not queue the event of delivery %s again; next reconcile", delivery)
            break
        store.requeued_pending_event(delivery, now)
        resent.append(f"{dispatch.HANDLE_EVENT}:{delivery}")
    return resent
