"""The workspace sweep: remove the task files of tasks that ended for good, and measure disk use.

A task's files (`<service>/.task/<id>/`) go when the task
- was Cancelled,
- Succeeded or Failed longer than ORCHESTRATOR_TASK_FILES_MAX_AGE_DAYS ago,
- ended and its pull request was closed or merged (`outputs.pull_request_closed`
  or `outputs.pull_request_merged`, set by the GitHub event handling),
- or no longer exists in the store.
The repository checkout and its branches (the agents' committed work) are
never touched. The sweep takes a service's workspace lease for the time it
removes files, so it never races a preparation; a busy service is skipped
until the next sweep.
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
from orchestrator.workspace.layout import INSTRUCTIONS_FILE, RESERVED, TASK_DIR, PathEscape, service_layout

log = logging.getLogger("orchestrator.workspace.cleanup")

SWEEP_LEASE_SECONDS = 600
DISK_GAUGE = "workspace_disk_bytes"


@dataclass
class SweepReport:
    """What one sweep did."""

    removed: list[str] = field(default_factory=list)  # "<service>/<task id>"
    busy: list[str] = field(default_factory=list)  # services skipped because their lease was held
    disk_bytes: int = 0


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


def _remove_instructions_of(service_dir: Path, service: str, task_id: int) -> None:
    """Remove CLAUDE.md when it is ours and describes the removed task (a tracked one stays)."""
    path = service_dir / INSTRUCTIONS_FILE
    if not path.is_file() or path.is_symlink():
        return
    marker = f"<!-- orchestrator: service={service} task={task_id} "
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if first.startswith(marker) and "# The repository's own instructions" not in path.read_text(errors="replace"):
        path.unlink()


def sweep(settings: Settings, store: TaskStore, *, now: float | None = None) -> SweepReport:
    """Remove task files of ended tasks under the workspace root; record the disk use."""
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
            candidates = [i for i in _task_ids(layout.tasks_dir)
                          if task_ended(store.get_task(service, i), now=now, max_age_seconds=max_age)]
            if not candidates:
                continue
            holder = f"sweep-{uuid.uuid4().hex[:12]}"
            try:
                leases.acquire(store, service, holder, SWEEP_LEASE_SECONDS)
            except leases.LeaseBusy:
                report.busy.append(service)
                continue
            try:
                for task_id in candidates:
                    # Read again under the lease: the task may have been retried meanwhile.
                    if not task_ended(store.get_task(service, task_id), now=now, max_age_seconds=max_age):
                        continue
                    target = layout.check(layout.task_dir(task_id), what="task directory")
                    remove_path(layout.task_dir(task_id))
                    _remove_instructions_of(layout.path, service, task_id)
                    report.removed.append(f"{service}/{task_id}")
                    log.info("removed the task files of %s/%s (%s)", service, task_id, target)
            finally:
                leases.release(store, service, holder)
    report.disk_bytes = disk_usage(root)
    store.set_gauge(DISK_GAUGE, report.disk_bytes)
    return report


__all__ = ["SweepReport", "sweep", "disk_usage", "task_ended", "DISK_GAUGE", "TASK_DIR"]
