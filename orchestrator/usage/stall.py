"""Stalls: a running agent whose output has not grown for ORCHESTRATOR_STALL_SECONDS is stopped and fails.

The watcher asks once per reconcile. The local runner's output file says when
it last grew (its modification time); elsewhere (pod logs) the last line is
compared with the one seen before, at most every quarter of the stall time
per run, so a thousand quiet runs cost a few log reads a second.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator import runs
from orchestrator.metrics import registry as metrics
from orchestrator.model import Run
from orchestrator.runners.base import FAILED, RUNNING, RunObservation
from orchestrator.settings import Settings
from orchestrator.store import LeaseNotHeld

log = logging.getLogger("orchestrator.usage")

STALL_RETRIES = 1  # a stalled run is tried again once (the task's first retry only)


class StallCheck:
    """Finds and stops stalled runs; keeps, per run, what its output looked like and since when."""

    def __init__(self, settings: Settings, runner: Any) -> None:
        self.settings = settings
        self.runner = runner
        self.seen: dict[str, tuple[Any, float]] = {}  # run id -> (last line, when it was first seen)
        self.next_look: dict[str, float] = {}

    def last_output_at(self, run_id: str, started: float, now: float) -> float:
        """When the run's output last grew, as well as can be told (never before it started)."""
        run_dir = getattr(self.runner, "run_dir", None)
        if run_dir is not None:
            try:
                return max(started, (run_dir(run_id) / "output.log").stat().st_mtime)
            except OSError:
                return started
        if now < self.next_look.get(run_id, 0.0):
            return self.seen.get(run_id, (None, started))[1]
        self.next_look[run_id] = now + max(1.0, self.settings.stall_seconds / 4)
        try:
            last = next(iter(list(self.runner.logs(run_id, follow=False, tail=1))[-1:]), "")
        except Exception:
            return max(started, now)  # cannot tell: never stop a run on a failed read
        previous = self.seen.get(run_id)
        if previous is None or previous[0] != last:
            self.seen[run_id] = (last, now)
            return max(started, now)
        return max(started, previous[1])

    def stalled(self, active: Mapping[str, Run], now: float | None = None) -> dict[str, float]:
        """Running runs idle for the stall time or more: run id -> seconds without output."""
        if not self.settings.stall_seconds:
            return {}
        now = time.time() if now is None else now
        found: dict[str, float] = {}
        for run_id, run in active.items():
            if run.phase != RUNNING or not run.started_at:
                continue
            if now - run.started_at < self.settings.stall_seconds * 3 / 4:
                # Too young to be stalled: reading its output (two API requests for a pod) would
                # make every reconcile cost requests per run instead of a constant two.
                continue
            idle = now - self.last_output_at(run_id, run.started_at, now)
            if idle >= self.settings.stall_seconds:
                found[run_id] = idle
        for gone in set(self.seen) - set(active):
            self.seen.pop(gone, None)
            self.next_look.pop(gone, None)
        return found

    def stop_stalled(
        self,
        store: Any,
        active: Mapping[str, Run],
        *,
        send: Callable[..., None],
        lock: Any = None,
        lease: tuple[str, str, int] | None = None,
        now: float | None = None,
    ) -> list[str]:
        """Fail (retryable once) and stop every stalled run; the run ids stopped."""
        stopped: list[str] = []
        for run_id, idle in self.stalled(active, now).items():
            run = store.get_run(run_id)
            if run is None or run.phase != RUNNING:
                continue  # ended meanwhile (seen by this very reconcile, or cancelled)
            task = store.get_task(run.service, run.task_id)
            retry = (task.retries if task else 0) < STALL_RETRIES
            obs = RunObservation(
                run_id,
                FAILED,
                reason=f"stalled: no output for {int(idle)} s",
                started_at=run.started_at,
                finished_at=time.time(),
                retryable=retry,
            )
            try:
                with lock if lock is not None else contextlib.nullcontext():
                    runs.apply_observation(store, obs, send=send, lease=lease)
            except LeaseNotHeld:
                log.warning("not stopping stalled run %s: the watcher lease passed to another holder", run_id)
                return stopped
            try:
                self.runner.cancel(run_id)
            except Exception:
                log.warning("could not stop stalled run %s", run_id, exc_info=True)
            log.warning("run %s stalled: no output for %d s; stopped", run_id, idle)
            metrics.run_stalled(run.service)
            stopped.append(run_id)
            self.seen.pop(run_id, None)
        return stopped
