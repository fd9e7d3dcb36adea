"""The per-service workspace lease: one run at a time prepares and uses a service directory.

The lease is a Redis key with an expiry (`store.acquire_lease`), held by a run
id, so a crashed holder's lease lapses by itself. Each grant carries a fencing
token that only grows: a holder that was paused past its expiry finds a newer
token and stops before it writes.

The run holds the lease from preparation until it ends: coordination code
calls `release(store, service, run_id)` when the run ends, and a long run's
tracker calls `renew(...)`. A lease whose holder run is over (it is no longer
recorded as finished, or it never launched an agent and is no longer its
task's current run) is taken over at once instead of waiting for the expiry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from orchestrator.states import TERMINAL
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.workspace.lease")


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


def lease_name(service: str) -> str:
    return f"workspace:{service}"


def _holder_is_over(store: TaskStore, holder: str) -> bool:
    """True when the holding run can no longer be using the workspace."""
    run = store.get_run(holder)
    if run is None:
        return False  # not a run (a sweep, an operator): respect its expiry
    if run.finished_at:
        return True
    task = store.get_task(run.service, run.task_id)
    if task is None:
        return True
    superseded = task.current_run != holder or task.status in TERMINAL
    # A run whose agent was launched may still be writing (a cancelled pod
    # takes a while to stop): wait for its end to be recorded, or the expiry.
    return superseded and not run.job_name


def acquire(store: TaskStore, service: str, holder: str, ttl_seconds: float) -> Lease:
    """Take (or re-take, for the same holder) the service's lease; raise LeaseBusy."""
    name = lease_name(service)
    token = store.acquire_lease(name, holder, ttl_seconds)
    if token:
        return Lease(service, holder, token)
    current = store.lease_holder(name)
    if current and current != holder and _holder_is_over(store, current):
        # Compare-and-delete: only the lease of that very holder goes.
        if store.release_lease(name, current):
            log.info("took over the workspace lease of %s from run %s, which is over", service, current)
        token = store.acquire_lease(name, holder, ttl_seconds)
        if token:
            return Lease(service, holder, token)
        current = store.lease_holder(name)
    raise LeaseBusy(service, current)


def check(store: TaskStore, lease: Lease) -> None:
    """Raise LeaseLost unless `lease` is still the newest grant and held by its holder."""
    holder, fence = store.lease_state(lease_name(lease.service))
    if fence != lease.token or holder != lease.holder:
        raise LeaseLost(f"the workspace lease of {lease.service} passed to another holder")


def renew(store: TaskStore, service: str, holder: str, ttl_seconds: float) -> bool:
    """Extend the lease while `holder` still holds it; False when it does not."""
    return store.renew_lease(lease_name(service), holder, ttl_seconds)


def release(store: TaskStore, service: str, holder: str) -> bool:
    """Give the lease up (a no-op unless `holder` holds it); call it when the run ends."""
    return store.release_lease(lease_name(service), holder)


def holder(store: TaskStore, service: str) -> str | None:
    """Who holds the service's workspace now."""
    return store.lease_holder(lease_name(service))
