"""What coordination asks of the world: a step sent, a run's capacity freed, a status reported.

None of these ever fails the coordination step that asks: the store already
says what should happen, and the re-drive repeats what did not.
"""

from __future__ import annotations

import logging
from typing import Any

from orchestrator import dispatch
from orchestrator.dispatch import Write
from orchestrator.github import reporter
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.workspace import lease

log = logging.getLogger("orchestrator.coordination")

ACTOR = "coordination"


def send(step: Step | str, *args: Any, write: Write | None = None, countdown: float | None = None) -> Any:
    """Queue a step (with `write`, as the dispatcher does); a broker that refuses is logged and left to the re-drive.

    Returns what `write` returned; a refused write raises as the store raises it.
    """
    try:
        return dispatch.send(step, *args, write=write, countdown=countdown)
    except dispatch.QueueUnavailable:
        # The store already says what should happen; the re-drive re-sends it.
        log.warning("could not queue %s%s; the reconcile loop will re-drive it", step, args)


def release_run(store: TaskStore, service: str, run_id: str, *, force: bool = False) -> bool:
    """Free the run's capacity slot and its workspace lease; True when a slot was held.

    Not while its agent may still be at work (launched, and not yet seen to end
    or to be gone: a superseded or cancelled run whose pod is still stopping):
    a new run would take its slot and reset the worktree under it. The watcher
    frees those (`force`) once it sees nothing of the agent left, and renews
    them meanwhile; if no watcher does, they lapse by their expiry.
    """
    if not force:
        run = store.get_run(run_id)
        if run is not None and run.agent_may_run:
            log.info("run %s: its agent may still be at work; its slot and worktree are kept until it stops", run_id)
            return False
    released = store.release_slot(run_id)
    try:
        lease.release(store, service, run_id)
    except Exception:  # the lease expires by itself; a release failure must not fail the outcome
        log.exception("could not release the workspace lease of run %s", run_id)
    return released


def notify(service: str, task_id: int) -> None:
    """Report the task's status to its GitHub issue or pull request; never fails the task."""
    try:
        reporter.notify_status(service, task_id)
    except Exception:
        log.exception("reporting task %s/%s to GitHub failed", service, task_id)
