"""Workspace leases: the service lock on the shared clone, and each task's worktree lease.

Two leases per service, the same mechanism:

- the service lock (`workspace:<service>`) guards the operations on the
  service's shared clone: fetch, adding, repairing and removing worktrees,
  pruning. A preparation holds it for seconds (`clone_lock`), never for a
  run; an `exclusive` task holds it for its whole run, so no other run of
  the service prepares meanwhile;
- the worktree lease (`workspace:<service>:<task id>`, `acquire(..., task_id=)`)
  is the run's from preparation until it ends (delivery included): one run at
  a time uses a task's worktree.

The lease is a Redis key with an expiry (`store.acquire_lease`), held by a run
id, so a crashed holder's lease lapses by itself. Each grant carries a fencing
token that only grows: a holder that was paused past its expiry finds a newer
token and stops before it writes.

The run holds the lease from preparation until it ends: coordination code
calls `release(store, service, run_id)` when the run ends, and the watcher's
reconcile renews the leases of every run it tracks (`renew_all`, fenced by the
watcher's own lease), so a run that outlasts ORCHESTRATOR_WORKSPACE_LEASE_SECONDS
keeps its worktree. A lease whose holder run is over (it is no longer
recorded as finished, or it never launched an agent and is no longer its
task's current run) is taken over at once instead of waiting for the expiry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.coordination.stages import find_stage, stages_of
from orchestrator.model import Task
from orchestrator.settings import Settings
from orchestrator.states import TERMINAL
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.workspace.lease")

# The service lock's expiry when held for clone operations (a fetch may take a while;
# a crashed holder's lock lapses after this), and how long a preparation waits for it
# before its step is retried later.
CLONE_LOCK_SECONDS = 600
CLONE_LOCK_WAIT_SECONDS = 20.0


class LeaseBusy(Exception):
    """Another run holds the service's workspace."""

    def __init__(self, service: str, holder: str | None):
        self.service, self.holder = service, holder
        super().__init__(f"the workspace of {service} is in use by run {holder or 'unknown'}")


class LeaseLost(Exception):
    """The lease expired and was granted to someone else while we worked."""


@dataclass(frozen=True)
class Lease:
    """A granted lease."""

    service: str
    holder: str
    token: int
    task_id: int | None = None  # None: the service lock

    @property
    def name(self) -> str:
        return lease_name(self.service, self.task_id)


def lease_name(service: str, task_id: int | None = None) -> str:
    """The service lock's name, or with `task_id` the task worktree's lease."""
    return f"workspace:{service}" if task_id is None else f"workspace:{service}:{int(task_id)}"


def _holder_is_over(store: TaskStore, holder: str) -> bool:
    """True when the holding run can no longer be using the workspace."""
    run = store.get_run(holder)
    if run is None:
        return False  # not a run (a sweep, an operator): respect its expiry
    # A run whose agent was launched may still be writing (a cancelled pod
    # takes a while to stop, and a cancel records the end when it asks, not
    # when the agent stops): wait until the watcher sees it gone, or the expiry.
    if run.agent_may_run:
        return False
    if run.finished_at:
        return True
    task = store.get_task(run.service, run.task_id)
    if task is None:
        return True
    return task.current_run != holder or task.status in TERMINAL


def acquire(store: TaskStore, service: str, holder: str, ttl_seconds: float, *, task_id: int | None = None) -> Lease:
    """Take (or re-take, for the same holder) the service lock, or a task's worktree lease; raise LeaseBusy."""
    name = lease_name(service, task_id)
    token = store.acquire_lease(name, holder, ttl_seconds)
    if token:
        return Lease(service, holder, token, task_id)
    current = store.lease_holder(name)
    if current and current != holder and _holder_is_over(store, current):
        # Compare-and-delete: only the lease of that very holder goes.
        if store.release_lease(name, current):
            log.info("took over the workspace lease of %s from run %s, which is over", service, current)
        token = store.acquire_lease(name, holder, ttl_seconds)
        if token:
            return Lease(service, holder, token, task_id)
        current = store.lease_holder(name)
    raise LeaseBusy(service, current)


def check(store: TaskStore, lease: Lease) -> None:
    """Raise LeaseLost unless `lease` is still the newest grant and held by its holder."""
    holder, fence = store.lease_state(lease.name)
    if fence != lease.token or holder != lease.holder:
        what = lease.service if lease.task_id is None else f"{lease.service}/{lease.task_id}"
        raise LeaseLost(f"the workspace lease of {what} passed to another holder")


def _task_of(store: TaskStore, holder: str) -> int | None:
    run = store.get_run(holder)
    return run.task_id if run is not None else None


def renew(store: TaskStore, service: str, holder: str, ttl_seconds: float) -> bool:
    """Extend the holder's leases (its task's worktree, and the service lock of an exclusive run);
    False when it holds none."""
    task_id = _task_of(store, holder)
    renewed = task_id is not None and store.renew_lease(lease_name(service, task_id), holder, ttl_seconds)
    return store.renew_lease(lease_name(service), holder, ttl_seconds) or renewed


def renew_all(
    store: TaskStore,
    held: Iterable[tuple[str, int, str]],
    ttl_seconds: float,
    *,
    fence: tuple[str, str, int] | None = None,
) -> int:
    """`renew` for many runs at once, (service, task id, run id) each: the watcher's reconcile keeps
    every live run's worktree (and an exclusive run's service lock) for as long as the run lasts,
    which may be far longer than one expiry. With the watcher's `fence`, a deposed watcher renews
    nothing (LeaseNotHeld). Returns how many leases were extended."""
    pairs: list[tuple[str, str]] = []
    for service, task_id, run_id in held:
        pairs += [(lease_name(service, task_id), run_id), (lease_name(service), run_id)]
    return store.renew_leases(pairs, ttl_seconds, fence=fence)


def release(store: TaskStore, service: str, holder: str) -> bool:
    """Give up what `holder` holds (a no-op for what it does not): call it when the run ends."""
    task_id = _task_of(store, holder)
    released = task_id is not None and store.release_lease(lease_name(service, task_id), holder)
    return store.release_lease(lease_name(service), holder) or released


def holder(store: TaskStore, service: str, task_id: int | None = None) -> str | None:
    """Who holds the service lock (or a task's worktree) now."""
    return store.lease_holder(lease_name(service, task_id))


def is_exclusive(settings: Settings | None, task: Task | None, stage: str = "") -> bool:
    """True for a task submitted with `exclusive: true`, or a run of a pipeline stage marked `exclusive`."""
    if task is None:
        return False
    if task.spec.get("exclusive"):
        return True
    if settings is None or not stage:
        return False
    found = find_stage(stages_of(settings, task), stage)
    return bool(found and found.exclusive)


def _is_exclusive(store: TaskStore, holder: str, settings: Settings | None = None) -> bool:
    """True when `holder` is an exclusive run (it keeps the service lock for its whole run)."""
    run = store.get_run(holder)
    task = store.get_task(run.service, run.task_id) if run is not None else None
    return run is not None and is_exclusive(settings, task, run.stage)


def refuse_if_exclusive(store: TaskStore, service: str, holder: str, settings: Settings | None = None) -> None:
    """Raise LeaseBusy while an exclusive run (not `holder`) has the service to itself."""
    current = store.lease_holder(lease_name(service))
    if (
        current
        and current != holder
        and _is_exclusive(store, current, settings)
        and not _holder_is_over(store, current)
    ):
        raise LeaseBusy(service, current)


def active_worktrees(store: TaskStore, worktrees_dir: Path, service: str) -> dict[int, str]:
    """Task id -> holding run, for every worktree of the service whose lease is held."""
    held: dict[int, str] = {}
    if worktrees_dir.is_dir() and not worktrees_dir.is_symlink():
        for entry in worktrees_dir.iterdir():
            if entry.name.isdigit():
                current = store.lease_holder(lease_name(service, int(entry.name)))
                if current:
                    held[int(entry.name)] = current
    return held


def acquire_exclusive(store: TaskStore, settings: Settings, service: str, holder: str, task_id: int) -> Lease:
    """Take the service lock for the whole run of an exclusive task, once no other run uses the service.

    While other runs hold worktrees the lock is given back (they may need it
    to finish preparing) and LeaseBusy raised: the step tries again later.
    """
    lease = acquire(store, service, holder, settings.workspace_lease_seconds)
    others = {
        t: h
        for t, h in active_worktrees(store, settings.workspace_root / service / "worktrees", service).items()
        if t != task_id and h != holder and not _holder_is_over(store, h)
    }
    if others:
        store.release_lease(lease_name(service), holder)
        raise LeaseBusy(service, sorted(others.values())[0])
    return lease


@contextmanager
def clone_lock(
    store: TaskStore,
    service: str,
    holder: str,
    *,
    ttl_seconds: float = CLONE_LOCK_SECONDS,
    wait_seconds: float = CLONE_LOCK_WAIT_SECONDS,
) -> Iterator[Lease]:
    """Hold the service lock for the operations on the shared clone, waiting a little for it; raise LeaseBusy.

    A holder that already has it (an exclusive run) keeps it afterwards.
    """
    held_before = store.lease_holder(lease_name(service)) == holder
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        try:
            lease = acquire(store, service, holder, max(ttl_seconds, 1))
            break
        except LeaseBusy as busy:
            if time.monotonic() >= deadline or (busy.holder and _is_exclusive(store, busy.holder)):
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
    try:
        yield lease
    finally:
        if not held_before:
            store.release_lease(lease_name(service), holder)
