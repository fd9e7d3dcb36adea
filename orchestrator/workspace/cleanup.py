"""The workspace sweep: remove the worktrees of tasks that ended for good, and measure disk use.

A task's worktree (`<service>/worktrees/<id>/`, its files under `.task/`
included) and its metadata in the service's clone go when the task
- was Cancelled,
- Succeeded or Failed longer than ORCHESTRATOR_TASK_FILES_MAX_AGE_DAYS ago,
- ended and its pull request was closed or merged (`outputs.pull_request_closed`
  or `outputs.pull_request_merged`, set by the GitHub event handling),
- or no longer exists in the store.
The clone and its branches (the agents' committed work) are never touched.
The sweep takes the task's worktree lease, then the service lock for the
removal (seconds), so it never races a preparation; a worktree a run holds
is skipped until the next sweep.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import validation
from orchestrator.model import Task
from orchestrator.settings import Settings
from orchestrator.states import TERMINAL, Status
from orchestrator.store import TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace.files import remove_path
from orchestrator.workspace.git import Git
from orchestrator.workspace.layout import RESERVED, TASK_DIR, PathEscape, service_layout
from orchestrator.workspace.worktree import remove_worktree

log = logging.getLogger("orchestrator.workspace.cleanup")

SWEEP_LEASE_SECONDS = 600
DISK_GAUGE = "workspace_disk_bytes"


@dataclass
class SweepReport:
    """What one sweep did."""

    removed: list[str] = field(default_factory=list)  # "<service>/<task id>"
    busy: list[str] = field(default_factory=list)  # "<service>/<task id>" skipped: a run holds the worktree
    disk_bytes: int = 0
    services: dict[str, int] = field(default_factory=dict)  # disk use per service (gauge workspace_disk_bytes:<s>)


def task_ended(task: Task | None, *, now: float, max_age_seconds: float) -> bool:
    """True when the task's files are of no further use."""
    if task is None:
        return True
    status = task.status
    if status == Status.CANCELLED:
        return True
    if status not in TERMINAL:
        return False
    outputs = task.outputs
    # The webhook handler records `pull_request_outcome` when our pull request closes.
    if task.pull_request_outcome or outputs.get("pull_request_closed") or outputs.get("pull_request_merged"):
        return True
    ended_at = task.updated_at or 0.0
    return now - ended_at >= max_age_seconds


def disk_usage(root: Path) -> int:
    """Bytes the workspace root occupies on disk (links not followed)."""
    total = 0
    if not root.exists():
        return 0
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            try:
                info = os.lstat(os.path.join(current, name))
            except FileNotFoundError:
                continue
            total += getattr(info, "st_blocks", 0) * 512 or info.st_size
    return total


def _task_ids(tasks_dir: Path) -> list[int]:
    if not tasks_dir.is_dir() or tasks_dir.is_symlink():
        return []
    return sorted(int(e.name) for e in tasks_dir.iterdir() if e.name.isdigit() and e.name == str(int(e.name)))


def _remove_checkout(store: TaskStore, settings: Settings, service: str, task_id: int, holder: str) -> None:
    """Remove a task's worktree (and its metadata in the clone) under the service lock; LeaseBusy when held."""
    layout = service_layout(settings.workspace_root, service)
    target = layout.check(layout.checkout(task_id).path, what="task checkout")
    with leases.clone_lock(store, service, holder, ttl_seconds=SWEEP_LEASE_SECONDS, wait_seconds=5.0):
        if (layout.clone / ".git").is_dir() and not (layout.clone / ".git").is_symlink():
            remove_worktree(Git(layout.clone, timeout=settings.git_timeout_seconds), target)
        elif target.exists():
            remove_path(target)


def sweep(store: TaskStore, settings: Settings, *, now: float | None = None) -> SweepReport:
    """Remove the worktrees of ended tasks under the workspace root; record the disk use (total, per service)."""
    now = time.time() if now is None else now
    max_age = settings.task_files_max_age_days * 86400
    root = settings.workspace_root
    report = SweepReport()
    if root.is_dir():
        for service_dir in sorted(root.iterdir()):
            service = service_dir.name
            if service in RESERVED or not service_dir.is_dir() or service_dir.is_symlink():
                continue
            try:
                layout = service_layout(root, validation.service_name(service))
            except (ValueError, PathEscape):
                continue
            candidates = [
                i
                for i in _task_ids(layout.worktrees)
                if task_ended(store.get_task(service, i), now=now, max_age_seconds=max_age)
            ]
            holder = f"sweep-{uuid.uuid4().hex[:12]}"
            for task_id in candidates:
                try:
                    # The task's worktree lease first: a retried task's new run is never swept under.
                    leases.acquire(store, service, holder, SWEEP_LEASE_SECONDS, task_id=task_id)
                except leases.LeaseBusy:
                    report.busy.append(f"{service}/{task_id}")
                    continue
                try:
                    # Read again under the lease: the task may have been retried meanwhile.
                    if not task_ended(store.get_task(service, task_id), now=now, max_age_seconds=max_age):
                        continue
                    _remove_checkout(store, settings, service, task_id, holder)
                    report.removed.append(f"{service}/{task_id}")
                    log.info("removed the worktree of %s/%s", service, task_id)
                except leases.LeaseBusy:
                    report.busy.append(service)
                finally:
                    store.release_lease(leases.lease_name(service, task_id), holder)
            used = disk_usage(service_dir)
            report.services[service] = used
            store.set_gauge(f"{DISK_GAUGE}:{service}", used)
    report.disk_bytes = disk_usage(root)
    store.set_gauge(DISK_GAUGE, report.disk_bytes)
    return report


__all__ = ["SweepReport", "sweep", "disk_usage", "task_ended", "DISK_GAUGE", "TASK_DIR"]
