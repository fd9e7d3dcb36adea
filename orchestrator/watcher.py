"""The singleton control loop behind `orchestrator watcher`.

One active at a time (a Redis lease with a fencing token; a standby takes over
when it lapses). While leader it drives the runner's `Tracker`
(`Runner.tracker()`, see orchestrator/runners/base.py), whatever the runner:
- runs the tracker's streams (the Kubernetes runner watches our Jobs and pods
  by label, resuming from the last resourceVersion and listing again after 410
  Gone; the local runner has none);
- reconciles every ORCHESTRATOR_RECONCILE_SECONDS (local runs: every second at
  most): one list of Jobs and one of pods (two requests however many runs), or
  the local status files, compared with the runs our store says are active,
  repairing whatever a stream missed; after a restart this adopts every run;
- renews, from its reconcile, the workspace leases of every active run (a run
  may outlast one lease), fenced like its writes; keeps a superseded or
  cancelled run's slot and worktree until nothing of its agent is left (and
  stops such an agent no cancel reached);
- sweeps what finished runs left, older than ORCHESTRATOR_SWEEP_AFTER_SECONDS.
Every observation it records carries its fencing token: the store refuses it
once the lease passed to another holder, so a deposed leader writes nothing.

The finished state lives in the store: a Job deleted by its TTL after we saw
it end changes nothing, so a finished task is never run again.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator import dispatch, runs
from orchestrator.coordination import redrive, retention
from orchestrator.metrics import registry as metrics
from orchestrator.model import Run
from orchestrator.runners.base import FAILED, SUCCEEDED, Runner, RunObservation, Tracker
from orchestrator.runners.errors import RunnerError
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import LeaseNotHeld, StoreError, TaskStore
from orchestrator.usage.stall import StallCheck
from orchestrator.workspace import lease as leases

log = logging.getLogger("orchestrator.watcher")
LEASE = "watcher"


# The run fields a reconcile reads to tell a quiet run (runs.is_quiet) and a
# launched one: with ten thousand runs, reading and decoding whole run records
# (inputs, outputs...) took 0.4 s of each reconcile, more than the rest of its
# store reads together. tests/test_watcher.py checks is_quiet gives the same
# answer on these fields as on the whole record.
RECONCILE_RUN_FIELDS = ("run_id", "service", "task_id", "phase", "job_name", "started_at", "observed_reason")

# How long a stopping watcher waits for its watch streams before it releases the lease.
SHUTDOWN_WAIT_SECONDS = 2.0

# The workspace sweep and retention only remove what ended long ago: hourly is plenty.
WORKSPACE_SWEEP_SECONDS = 3600.0


@dataclass
class ReconcileReport:
    """What one reconcile did (logged, and read by tests and the benchmark)."""

    active: int = 0
    observed: int = 0  # active runs whose Job or pods were listed
    finished: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    redriven: dict[str, list[str]] = field(default_factory=dict)
    renewed: int = 0  # workspace leases extended


class Watcher:
    """Leader-elected tracking loop for every active run."""

    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        runner: Runner,
        *,
        send: Callable[..., None] = dispatch.send,
        holder: str | None = None,
        watch_timeout: int = 60,
        poll_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.runner = runner
        self.send = send
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"
        self.tracker: Tracker = runner.tracker(self._on_change, watch_timeout=watch_timeout)
        self.poll_seconds = poll_seconds if poll_seconds is not None else self.tracker.poll_seconds
        # (lease, holder, fencing token) while leader: every observation it records is
        # written only if that lease is still ours with that token, so a leader that
        # was deposed without knowing it (paused, partitioned) cannot write over its
        # successor. None when not leading (then reconcile() called directly, as
        # tests and the benchmark do, writes unfenced).
        self.fence: tuple[str, str, int] | None = None
        self.lock = threading.Lock()
        self._missing: dict[str, int] = {}
        self._gone: dict[str, int] = {}  # stopping runs seen with nothing left, by run id
        self._streams: list[threading.Thread] = []
        self._stream_stop = threading.Event()
        self.leader = False
        self._next_workspace_sweep = 0.0
        self._next_lease_renewal = 0.0
        self.stalls = StallCheck(settings, runner)

    # Applying observations ---------------------------------------------------------

    def _on_change(self, run_id: str) -> None:
        obs = self.tracker.observation(run_id)
        if obs is None:
            return
        if obs.phase == FAILED and self.tracker.end_lags(run_id):
            return  # the pod's own end is on its way (or the next reconcile applies what it lists)
        try:
            self.apply(obs)
        except StoreError as exc:  # the next reconcile applies what the stream saw
            log.warning("could not record what run %s did: %s", run_id, exc)

    def apply(self, obs: RunObservation) -> bool:
        """Record one observation (serialised: the streams and the reconcile share it)."""
        with self.lock:
            run = self.store.get_run(obs.run_id)
            if run is None:
                return False  # not a run of this store (or long gone)
            try:
                sent = runs.apply_observation(self.store, obs, send=self.send, lease=self.fence)
            except LeaseNotHeld:
                log.warning("not recording what run %s did: the watcher lease passed to another holder", obs.run_id)
                return False
            if obs.phase in (SUCCEEDED, FAILED) and self.tracker.still_running(obs.run_id):
                # We decided it failed (pending timeout, crash loop) while its Job still runs: stop it.
                try:
                    self.runner.cancel(obs.run_id)
                except RunnerError as exc:
                    log.warning("could not delete the Job of failed run %s: %s", obs.run_id, exc)
            return sent

    def active_runs(self) -> dict[str, tuple[Run, Status]]:
        """Runs our store says are launching or running (read before listing, so no launch races a list).

        Each run comes with its task's status, and has only the fields a
        reconcile compares (RECONCILE_RUN_FIELDS) read: one script per
        thousand runs reads them. A run that needs writing is read again in full
        by `apply`.
        """
        refs = self.store.task_refs_in_status(Status.LAUNCHING, Status.RUNNING)
        active: dict[str, tuple[Run, Status]] = {}
        for row in self.store.current_runs(refs, *RECONCILE_RUN_FIELDS):
            if row is None:
                continue  # the task went meanwhile
            task_status, run_id, run = row
            if run_id and run is not None and run.run_id:
                active[run_id] = (run, task_status)
        return active

    def reconcile(self) -> ReconcileReport:
        """List what exists, compare with the store, repair what the watch missed."""
        report = ReconcileReport()
        began = time.monotonic()
        active = self.active_runs()
        report.active = len(active)
        report.renewed = self.renew_workspaces(active)
        self.tracker.relist()
        observations = self.tracker.observations(active)
        report.observed = sum(1 for run_id in active if run_id in observations)
        for run_id, (run, task_status) in active.items():
            obs = observations.get(run_id)
            if obs is not None:
                self._missing.pop(run_id, None)
                if runs.is_quiet(run, task_status, obs):
                    continue  # goes on as recorded: nothing to read again or write
                if self.apply(obs):
                    report.finished.append(run_id)
                continue
            if not run.job_name or run.ended:
                continue  # not launched yet (the launch step is on its way), or already ended
            # Gone before we saw its end. Twice in a row, so one odd list cannot fail a run.
            self._missing[run_id] = self._missing.get(run_id, 0) + 1
            if self._missing[run_id] >= 2:
                self._missing.pop(run_id, None)
                with self.lock:
                    try:
                        if runs.record_lost(
                            self.store,
                            run_id,
                            "the run's Job disappeared before its end was seen",
                            send=self.send,
                            lease=self.fence,
                        ):
                            report.lost.append(run_id)
                            metrics.run_lost()
                    except LeaseNotHeld:
                        log.warning("not recording run %s lost: the watcher lease passed to another holder", run_id)
        for run_id in list(self._missing):
            if run_id not in active:
                self._missing.pop(run_id, None)
        report.finished += self.stalls.stop_stalled(
            self.store,
            {run_id: run for run_id, (run, _) in active.items()},
            send=self.send,
            lock=self.lock,
            lease=self.fence,
        )
        report.swept = self.sweep()
        report.redriven = self.coordinate()
        metrics.reconciled(time.monotonic() - began)
        return report

    def _agent_gone(self, run: Run) -> bool:
        """True when nothing of a superseded or cancelled run's agent is left, twice in a row (after
        the reconcile's relist): then its slot and worktree are freed for the next run."""
        obs = self.tracker.observations([run.run_id]).get(run.run_id)
        stopped = obs is None or (obs.phase in (SUCCEEDED, FAILED) and not self.tracker.still_running(run.run_id))
        if not stopped:
            self._gone.pop(run.run_id, None)
            if not run.ended:
                # Superseded, and nobody asked it to stop yet (its cancel_run is still queued, or
                # was lost with a worker): ask now; deleting twice is harmless.
                self._stop_superseded(run.run_id)
            return False
        # One odd list must not free the worktree of a live agent.
        self._gone[run.run_id] = self._gone.get(run.run_id, 0) + 1
        if self._gone[run.run_id] < 2:
            return False
        self._gone.pop(run.run_id, None)
        return True

    def _stop_superseded(self, run_id: str) -> None:
        with self.lock:
            try:
                runs.cancel(self.store, self.runner, run_id, actor="watcher (superseded run)")
            except (RunnerError, StoreError) as exc:
                log.warning("could not stop superseded run %s: %s (next reconcile)", run_id, exc)

    def renew_workspaces(self, active: dict[str, tuple[Run, Status]]) -> int:
        """Extend the worktree lease (and an exclusive run's service lock) of every active run.

        A run may last ORCHESTRATOR_MAX_TIMEOUT_SECONDS, far longer than one
        lease; without this its lease lapsed mid-run and another run could
        take (and reset) the worktree under a live agent. Fenced by our lease.
        """
        ttl = self.settings.workspace_lease_seconds
        now = time.monotonic()
        if now < self._next_lease_renewal:
            return 0  # renewed moments ago: every lease has most of its expiry left
        held = [(run.service, run.task_id, run_id) for run_id, (run, _) in active.items() if run.service]
        try:
            renewed = leases.renew_all(self.store, held, ttl, fence=self.fence)
        except LeaseNotHeld:
            log.warning("not renewing workspace leases: the watcher lease passed to another holder")
            return 0
        # A quarter of the shortest expiry a run's lease may have been left with: an exclusive
        # run's service lock is extended to CLONE_LOCK_SECONDS by its own preparation's clone work.
        self._next_lease_renewal = now + min(ttl, leases.CLONE_LOCK_SECONDS) / 4
        return renewed

    def coordinate(self) -> dict[str, list[str]]:
        """Coordination's periodic share: re-drive tasks whose step was lost, renew or reclaim slots,
        and now and then sweep the workspace of tasks that ended for good and delete tasks past retention."""
        try:
            done = redrive.redrive_stuck(self.store, self.settings, agent_gone=self._agent_gone, fence=self.fence)
        except (StoreError, dispatch.QueueUnavailable) as exc:
            log.warning("re-drive failed: %s", exc)
            return {}
        draining = set(done.get("draining", ()))
        self._gone = {run_id: seen for run_id, seen in self._gone.items() if run_id in draining}
        now = time.monotonic()
        if now >= self._next_workspace_sweep:
            self._next_workspace_sweep = now + WORKSPACE_SWEEP_SECONDS
            try:
                self.send(Step.CLEANUP_WORKSPACE)
            except dispatch.QueueUnavailable as exc:
                log.warning("could not queue the workspace sweep: %s", exc)
            try:
                retention.expire_ended(self.store, self.settings)
            except StoreError as exc:
                log.warning("retention pass failed (next one in an hour): %s", exc)
        return {key: value for key, value in done.items() if value}

    def sweep(self) -> list[str]:
        """Remove what our finished runs left, older than configured (never a live one, never one not ours)."""
        return self.tracker.sweep(self.settings.sweep_after_seconds)

    # The loop ------------------------------------------------------------------------

    def _start_streams(self) -> None:
        if self._streams:
            return
        self._stream_stop = threading.Event()
        for name in self.tracker.streams:
            thread = threading.Thread(
                target=self.tracker.stream, args=(name, self._stream_stop), name=f"watch-{name}", daemon=True
            )
            thread.start()
            self._streams.append(thread)

    def _stop_streams(self, wait: float | None = None) -> None:
        """Stop the watch streams; wait for them at most `wait` seconds (default: as long as a stream may take)."""
        self._stream_stop.set()
        if wait is None:
            wait = self.tracker.stream_stop_seconds
        deadline = time.monotonic() + wait
        for thread in self._streams:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._streams = []

    def run(self, stop: threading.Event) -> None:
        """Take part in the election; while leader, watch, reconcile and sweep until `stop`."""
        ttl = self.settings.watcher_lease_seconds
        next_reconcile = 0.0
        try:
            while not stop.is_set():
                try:
                    token = self.store.acquire_lease(LEASE, self.holder, ttl)
                except StoreError as exc:
                    log.warning("lease: %s", exc)
                    token = 0
                except Exception:  # noqa: BLE001 - as a reconcile below: the loop outlives one bad pass
                    log.exception("lease: unexpected error; standing by")
                    token = 0
                if not token:
                    self.fence = None
                    if self.leader:
                        log.warning("lost the watcher lease; standing by")
                        self._stop_streams()
                    self.leader = False
                    metrics.watcher_leader(False)
                    stop.wait(min(ttl / 3, 5.0))
                    continue
                self.fence = (LEASE, self.holder, token)  # a new token when the lease lapsed and was taken again
                if not self.leader:
                    log.info("watcher lease taken (fencing token %d); adopting every active run", token)
                    self.leader = True
                    metrics.watcher_leader(True)
                    next_reconcile = 0.0
                    self._next_lease_renewal = 0.0
                now = time.monotonic()
                if now >= next_reconcile:
                    try:
                        report = self.reconcile()
                        log.info(
                            "reconcile: %d active, %d observed, %d finished, %d lost, %d swept",
                            report.active,
                            report.observed,
                            len(report.finished),
                            len(report.lost),
                            len(report.swept),
                        )
                    except (RunnerError, StoreError) as exc:
                        log.warning("reconcile failed: %s", exc)
                    except Exception:  # noqa: BLE001
                        # The control loop outlives one bad pass: Redis answering an error of its own
                        # while it loads its AOF or changes master (READONLY, MISCONF) is not a
                        # reason to stop tracking every run; the next pass starts afresh.
                        log.exception("reconcile failed unexpectedly")
                    next_reconcile = now + self.poll_seconds
                    self._start_streams()
                stop.wait(max(0.05, min(ttl / 3, next_reconcile - time.monotonic())))
        finally:
            # A stream blocked in a watch request ends only when the request does (up to
            # watch_timeout): on shutdown do not wait for it (its thread is a daemon, and
            # applying an observation is idempotent), so SIGTERM stops the watcher in
            # seconds and the lease is released for a standby at once.
            self._stop_streams(wait=SHUTDOWN_WAIT_SECONDS)
            self.fence = None
            if self.leader:
                try:
                    self.store.release_lease(LEASE, self.holder)
                except StoreError:
                    pass
            self.leader = False
            metrics.watcher_leader(False)
