"""What the `prepare_workspace` step does for one run, as plain code the thin Celery step calls.

Order: check the run is still its task's current run in Preparing; take the
service's lease (holder = run id); prepare; move the task Preparing ->
Launching (compare-and-set); queue `launch_run`.

- Lease busy: the step is retried with a countdown while the task stays in
  Preparing; after `BUSY_RETRIES` tries the task goes back to Queued (the
  state machine's edge for "workspace lost, try later") and admission picks
  it up again when capacity frees.
- Transient git failure: retried with exponential backoff, at most
  `GIT_RETRIES` times, then treated as permanent.
- Permanent failure: the task moves to Failed with git's message (scrubbed
  of secrets), the run is recorded as failed, the lease is released and
  admission is asked to look at the service again (dependents, waiting tasks).
- Repeated delivery after a crash: a task already in Launching for this run
  is left alone (its `launch_run` was queued with the move; the reconcile
  loop re-sends one that was lost); anything else that is not this run in
  Preparing is a stale message and is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from orchestrator import dispatch
from orchestrator.backoff import delay
from orchestrator.dispatch import Write
from orchestrator.github.reporter import notify_status
from orchestrator.model import PrepareAction, Run, RunPhase
from orchestrator.settings import Settings
from orchestrator.states import ACTIVE, Status
from orchestrator.steps import Step
from orchestrator.store import IllegalTransition, LeaseNotHeld, StoreError, TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace.git import GitError, scrub
from orchestrator.workspace.layout import PathEscape
from orchestrator.workspace.prepare import PreparationError, PreparedWorkspace, prepare_workspace
from orchestrator.workspace.worktree import BranchInUse

log = logging.getLogger("orchestrator.workspace.step")

ACTOR = "workspace"
BUSY_RETRIES = 20
BUSY_COUNTDOWN = 15.0
GIT_RETRIES = 5
GIT_BACKOFF_BASE = 5.0
GIT_BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class StepResult:
    """What the step should do next: `action` is launched, retry, failed, requeued or skipped."""

    action: PrepareAction
    message: str = ""
    countdown: float | None = None
    prepared: PreparedWorkspace | None = None


def backoff(retries: int, *, base: float = GIT_BACKOFF_BASE, cap: float = GIT_BACKOFF_MAX) -> float:
    """Exponential backoff with jitter, so retries of many runs do not arrive together (orchestrator.backoff)."""
    return delay(retries, base=base, cap=cap)


@contextmanager
def _keep_alive(store: TaskStore, service: str, task_id: int, *, every: float) -> Iterator[None]:
    """Touch the task every `every` seconds while the block runs.

    The reconcile loop re-sends the step of a task left unchanged in Preparing
    for ORCHESTRATOR_STUCK_AFTER_SECONDS, taking it for a lost message; one
    git clone of a large repository may take longer than that (up to
    ORCHESTRATOR_GIT_TIMEOUT_SECONDS), and a second preparation of the same run
    would then work in the same directory at the same time. A live preparation
    keeps its task fresh; a killed one stops, and is re-driven as before.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                store.update_task(service, task_id)
            except StoreError:  # Redis away or the task gone: the step itself will find out
                pass

    thread = threading.Thread(target=beat, name=f"keep-alive {service}/{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fail(store: TaskStore, settings: Settings, run: Run, message: str) -> StepResult:
    service, task_id, run_id = run.service, run.task_id, run.run_id
    message = scrub(message, settings.secret_values())[:1000]
    reason = f"workspace preparation failed: {message}"
    try:
        store.transition(service, task_id, Status.FAILED, reason=reason, actor=ACTOR, expect=Status.PREPARING)
    except IllegalTransition:
        leases.release(store, service, run_id)
        return StepResult(PrepareAction.SKIPPED, "the task moved on meanwhile")
    store.update_run(run_id, phase=RunPhase.FAILED, failure_reason=reason, finished_at=time.time())
    leases.release(store, service, run_id)
    notify_status(service, task_id, store=store, settings=settings)  # the issue hears why it failed
    try:
        # finish_run frees the run's capacity slot; admit moves dependents and waiting tasks.
        dispatch.send(Step.FINISH_RUN, run_id)
        dispatch.send(Step.ADMIT, service, task_id)
    except dispatch.QueueUnavailable:
        log.warning(
            "could not queue finish/admit for %s/%s after a failed preparation; reconcile will", service, task_id
        )
    log.warning("run %s: %s", run_id, reason)
    return StepResult(PrepareAction.FAILED, reason)


def _release_unless_launched(store: TaskStore, run: Run) -> None:
    """Give the lease back, unless an agent of this run was launched and may still use the workspace."""
    if not run.job_name:
        leases.release(store, run.service, run.run_id)


def prepare_for_run(store: TaskStore, settings: Settings, run_id: str, *, retries: int = 0) -> StepResult:
    """Do the prepare_workspace step for `run_id`; `retries` is how often it was retried already.

    A retry waits in the worker that holds its message (Celery keeps a
    countdown's message taken and unacknowledged, out of the queue where the
    re-drive looks), so the wait is never longer than half the re-drive's
    patience and the task is touched: a live retry loop is not taken for a
    lost step, which would start a second one. A worker that dies holding the
    message stops touching, and the task is re-driven as before.
    """
    result = _prepare(store, settings, run_id, retries)
    if result.action == PrepareAction.RETRY:
        run = store.get_run(run_id)
        try:
            if run is not None:
                store.update_task(run.service, run.task_id)
        except StoreError:
            pass  # Redis away: the retry goes on; a re-drive meanwhile finds the task Launching or prepares again
        countdown = min(result.countdown or 0.0, settings.stuck_after_seconds / 2)
        return dataclasses.replace(result, countdown=countdown)
    return result


def _prepare(store: TaskStore, settings: Settings, run_id: str, retries: int) -> StepResult:
    run, task, contexts = store.get_run_with_task(run_id, contexts=True)
    if run is None:
        return StepResult(PrepareAction.SKIPPED, f"no run {run_id}")
    service, task_id = run.service, run.task_id
    if task is None:
        _release_unless_launched(store, run)
        return StepResult(PrepareAction.SKIPPED, f"no task {service}/{task_id}")
    status = task.status
    if task.current_run != run_id:
        _release_unless_launched(store, run)
        return StepResult(PrepareAction.SKIPPED, "the run was superseded")
    if status == Status.LAUNCHING:
        # A second delivery of this step (redelivered, or re-driven while the first waited in its
        # queue): launch_run was queued with the move to Launching, so sending it again here would
        # launch twice. A launch_run lost on its way is the reconcile loop's to re-send.
        return StepResult(PrepareAction.SKIPPED, "already prepared; launch_run was queued then")
    if status != Status.PREPARING:
        if status not in ACTIVE:
            _release_unless_launched(store, run)
        return StepResult(PrepareAction.SKIPPED, f"the task is {status.value}")

    try:
        # The task's worktree is the run's until it ends; the service lock only for the clone's
        # operations (seconds), or for the whole run of an exclusive task.
        lease = leases.acquire(store, service, run_id, settings.workspace_lease_seconds, task_id=task_id)
        if leases.is_exclusive(settings, task, run.stage):
            leases.acquire_exclusive(store, settings, service, run_id, task_id)
        else:
            leases.refuse_if_exclusive(store, service, run_id, settings)
        clone_ttl = 2 * settings.git_timeout_seconds + 30
        with _keep_alive(store, service, task_id, every=settings.stuck_after_seconds / 3):
            prepared = prepare_workspace(
                store,
                settings,
                run_id,
                lease=lease,
                loaded=(run, task, contexts),
                final_check=False,
                clone_lock=lambda: leases.clone_lock(store, service, run_id, ttl_seconds=clone_ttl),
            )
    except (leases.LeaseBusy, BranchInUse) as busy:
        if retries < BUSY_RETRIES:
            return StepResult(PrepareAction.RETRY, str(busy), countdown=BUSY_COUNTDOWN * random.uniform(0.8, 1.2))
        try:
            store.transition(
                service,
                task_id,
                Status.QUEUED,
                reason=f"waiting for the workspace: {busy}",
                actor=ACTOR,
                expect=Status.PREPARING,
            )
        except IllegalTransition:
            return StepResult(PrepareAction.SKIPPED, "the task moved on meanwhile")
        leases.release(store, service, run_id)
        notify_status(service, task_id, store=store, settings=settings)
        try:
            dispatch.send(Step.ADMIT, service, task_id)  # admission decides when it runs again
        except dispatch.QueueUnavailable:
            log.warning("could not queue admit for %s/%s; the reconcile loop will", service, task_id)
        return StepResult(PrepareAction.REQUEUED, str(busy))
    except leases.LeaseLost as exc:
        return StepResult(PrepareAction.RETRY, str(exc), countdown=backoff(retries))
    except GitError as exc:
        if exc.transient and retries < GIT_RETRIES:
            log.info("run %s: transient git failure, retry %d: %s", run_id, retries + 1, exc)
            return StepResult(PrepareAction.RETRY, str(exc), countdown=backoff(retries))
        return _fail(store, settings, run, str(exc))
    except PreparationError as exc:
        if exc.transient and retries < GIT_RETRIES:
            return StepResult(PrepareAction.RETRY, str(exc), countdown=backoff(retries))
        return _fail(store, settings, run, str(exc))
    except (PathEscape, ValueError) as exc:
        return _fail(store, settings, run, str(exc))
    except OSError as exc:  # the shared volume: full, read-only, gone for a moment
        if retries < GIT_RETRIES:
            return StepResult(PrepareAction.RETRY, f"workspace I/O error: {exc}", countdown=backoff(retries))
        return _fail(store, settings, run, f"workspace I/O error: {exc}")

    where = (
        f"on branch {prepared.branch} at {prepared.commit[:12]}"
        if prepared.branch and prepared.commit
        else "(task files only, no repository)"
    )
    # What was prepared is recorded on the run, and launch_run queued, in the
    # same atomic step as the move to Launching (when the queue is on the store's
    # Redis): a crash can no longer fall between the move and the message. The
    # step also checks the lease is still ours: no window between that check
    # and the record that the workspace is ready.
    try:
        dispatch.send(
            Step.LAUNCH_RUN,
            run_id,
            write=Write(
                store,
                lambda enqueue: store.transition(
                    service,
                    task_id,
                    Status.LAUNCHING,
                    reason=f"workspace ready {where}",
                    actor=ACTOR,
                    expect=Status.PREPARING,
                    expect_fields={"current_run": run_id},
                    run_fields=(
                        run_id,
                        {
                            "branch": prepared.branch or "",
                            "commit": prepared.commit or "",
                            "workspace_fence": lease.token,
                            "working_directory": prepared.working_directory,
                        },
                    ),
                    enqueue=enqueue,
                    lease=(lease.name, lease.holder, lease.token),
                ),
            ),
        )
    except LeaseNotHeld as exc:
        return StepResult(
            PrepareAction.RETRY,
            f"the workspace lease of {service} passed to another holder ({exc})",
            countdown=backoff(retries),
        )
    except IllegalTransition:
        # Cancelled or superseded while we prepared: the workspace is not ours to keep.
        leases.release(store, service, run_id)
        return StepResult(PrepareAction.SKIPPED, "the task moved on meanwhile")
    notify_status(service, task_id, store=store, settings=settings)
    return StepResult(PrepareAction.LAUNCHED, f"workspace ready {where}", prepared=prepared)
