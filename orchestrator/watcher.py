"""The singleton control loop behind `orchestrator watch`.

One active at a time (a Redis lease; a standby takes over when it lapses).
While leader it
- watches our Jobs and pods by label (Kubernetes runner), resuming from the
  last resourceVersion and listing again after 410 Gone;
- reconciles every ORCHESTRATOR_RECONCILE_SECONDS: one list of Jobs and one
  of pods (two requests however many runs), compared with the runs our store
  says are active, repairing whatever the watch missed; after a restart this
  adopts every running Job;
- sweeps our finished Jobs older than ORCHESTRATOR_SWEEP_AFTER_SECONDS.
With the local runner the same loop polls the status files of local runs.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.coordination import redrive
from orchestrator import dispatch, runs
from orchestrator.kube import jobs as kjobs
from orchestrator.kube import status as kstatus
from orchestrator.kube.client import Gone, KubeError
from orchestrator.model import Run
from orchestrator.runners.base import FAILED, SUCCEEDED, RunObservation, Runner
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import StoreError, TaskStore

log = logging.getLogger("orchestrator.watcher")
LEASE = "watcher"


# What the tracker keeps of a Job or pod: what observing a run, sweeping and
# ordering events read. Not the spec (the pod template with its env, volumes
# and containers), nor labels, annotations and status fields nothing reads:
# with ten thousand runs the full objects would take hundreds of megabytes.
# The kept dicts use these (shared) key strings, not one copy per object.
_KEPT_METADATA = ("name", "resourceVersion", "creationTimestamp", "deletionTimestamp")
_KEPT_LABELS = (kjobs.LABEL_MANAGED_BY, kjobs.LABEL_RUN)
_KEPT_ANNOTATIONS = (kjobs.ANNOTATION_RUN_ID,)
_KEPT_STATUS = ("phase", "reason", "message", "startTime", "completionTime", "conditions", "active", "succeeded",
                "failed")
_KEPT_CONTAINER = ("name", "state", "lastState", "restartCount")


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """A Job or pod reduced to the metadata and status the tracker reads."""
    meta = obj.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    kept["labels"] = {k: labels[k] for k in _KEPT_LABELS if k in labels}
    kept["annotations"] = {k: annotations[k] for k in _KEPT_ANNOTATIONS if k in annotations}
    status = obj.get("status") or {}
    kept_status = {k: status[k] for k in _KEPT_STATUS if k in status}
    if "containerStatuses" in status:
        kept_status["containerStatuses"] = [{k: c[k] for k in _KEPT_CONTAINER if k in c}
                                            for c in status["containerStatuses"] or []]
    return {"metadata": kept, "status": kept_status}


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class KubeTracker:
    """A cache of our Jobs and pods, filled by lists and kept fresh by two watch streams."""

    def __init__(self, runner: Any, settings: Settings, on_change: Callable[[str], None], *,
                 watch_timeout: int = 60) -> None:
        self.runner = runner
        self.settings = settings
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"jobs": {}, "pods": {}}
        self.resource_version: dict[str, str] = {"jobs": "", "pods": ""}
        # Names by run id, so that one watch event costs the same with ten or ten
        # thousand runs (a scan of every cached object per event did not).
        self._job_of_run: dict[str, str] = {}
        self._pods_of_run: dict[str, dict[str, None]] = {}  # an insertion-ordered set of pod names

    # The run-id index; callers hold the lock.

    def _index(self, kind: str, name: str, obj: dict[str, Any]) -> None:
        run_id = kjobs.run_id_of(obj)
        if not run_id:
            return
        if kind == "jobs":
            self._job_of_run.setdefault(run_id, name)
        else:
            self._pods_of_run.setdefault(run_id, {})[name] = None

    def _unindex(self, kind: str, name: str, obj: dict[str, Any]) -> None:
        run_id = kjobs.run_id_of(obj)
        if not run_id:
            return
        if kind == "jobs":
            if self._job_of_run.get(run_id) == name:
                del self._job_of_run[run_id]
        else:
            names = self._pods_of_run.get(run_id)
            if names is not None:
                names.pop(name, None)
                if not names:
                    del self._pods_of_run[run_id]

    def _put(self, kind: str, name: str, obj: dict[str, Any] | None) -> None:
        """Cache (or with None, forget) one object and keep the index in step."""
        old = self.objects[kind].pop(name, None)
        if old is not None:
            self._unindex(kind, name, old)
        if obj is not None:
            self.objects[kind][name] = obj
            self._index(kind, name, obj)

    def _of_run(self, run_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The run's cached Job and pods (callers hold the lock)."""
        job_name = self._job_of_run.get(run_id)
        job = self.objects["jobs"].get(job_name) if job_name else None
        pods = self.objects["pods"]
        return job, [pods[n] for n in self._pods_of_run.get(run_id, ()) if n in pods]

    def _replace(self, kind: str, items: list[dict[str, Any]], resource_version: str) -> None:
        with self.lock:
            fresh = {o["metadata"]["name"]: o for o in items}
            old = self.objects[kind]
            # Keep a cached object that is newer than the listed one (a watch event raced the list).
            for name, obj in fresh.items():
                if name in old and _rv(old[name]) > _rv(obj):
                    fresh[name] = old[name]
            self.objects[kind] = fresh
            self.resource_version[kind] = resource_version
            if kind == "jobs":
                self._job_of_run = {}
            else:
                self._pods_of_run = {}
            for name, obj in fresh.items():
                self._index(kind, name, obj)

    def _slim_unless_cached(self, kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """`slim`, except that a listed object whose resourceVersion we hold already is the cached one.

        Most runs change nothing between two lists: reusing what we keep spares
        slimming them again, and the list then holds the same objects as the cache
        instead of a second copy of them.
        """
        cached = self.objects[kind]

        def transform(obj: dict[str, Any]) -> dict[str, Any]:
            meta = obj.get("metadata") or {}
            rv = meta.get("resourceVersion")
            old = cached.get(meta.get("name")) if rv else None
            if old is not None and old["metadata"].get("resourceVersion") == rv:
                return old
            return slim(obj)

        return transform

    def relist(self) -> None:
        """List Jobs and pods (two requests) and replace the cache."""
        client = self.runner.client
        job_list = client.list_jobs(kjobs.SELECTOR, self._slim_unless_cached("jobs"))
        self._replace("jobs", job_list.items, job_list.resource_version)
        pod_list = client.list_pods(kjobs.SELECTOR, self._slim_unless_cached("pods"))
        self._replace("pods", pod_list.items, pod_list.resource_version)

    def _relist_kind(self, kind: str) -> None:
        """List one kind again (after 410) and re-evaluate the runs whose objects changed meanwhile.

        An event we lost is a change we have not seen: an object listed with a
        resourceVersion other than the cached one, or one that appeared or went.
        The runs of unchanged objects lost nothing and are left alone.
        """
        client = self.runner.client
        transform = self._slim_unless_cached(kind)
        listing = client.list_jobs(kjobs.SELECTOR, transform) if kind == "jobs" \
            else client.list_pods(kjobs.SELECTOR, transform)
        with self.lock:
            before = dict(self.objects[kind])
        self._replace(kind, listing.items, listing.resource_version)
        listed = {o["metadata"]["name"]: o for o in listing.items}
        touched = [obj for name, obj in listed.items()
                   if name not in before or not _rv(obj) or _rv(before[name]) != _rv(obj)]
        touched += [obj for name, obj in before.items() if name not in listed]
        for run_id in sorted({run_id for run_id in map(kjobs.run_id_of, touched) if run_id}):
            self.on_change(run_id)

    def observations(self, run_ids: Iterable[str]) -> dict[str, RunObservation]:
        """Observations of the given runs that have a Job or pod in the cache.

        Only the runs asked for: finished Jobs stay listed until their TTL (a
        day by default), and observing them on every reconcile was work for nothing.
        """
        now, timeout = time.time(), self.settings.pending_timeout_seconds
        with self.lock:
            found = {run_id: self._of_run(run_id) for run_id in run_ids}
        observed = {}
        for run_id, (job, pods) in found.items():
            obs = kstatus.observe(run_id, job, pods, now=now, pending_timeout=timeout)
            if obs is not None:
                observed[run_id] = obs
        return observed

    def observation(self, run_id: str) -> RunObservation | None:
        with self.lock:
            job, pods = self._of_run(run_id)
        return kstatus.observe(run_id, job, pods, now=time.time(),
                               pending_timeout=self.settings.pending_timeout_seconds)

    def job_running(self, run_id: str) -> bool:
        """True when the run's Job exists and has not finished (so a failure we inferred must stop it)."""
        with self.lock:
            job, _pods = self._of_run(run_id)
        return job is not None and not kstatus.is_finished(job)

    def pod_lags(self, run_id: str) -> bool:
        """True when the run's Job has failed but its newest pod still looks alive in our cache.

        Jobs and pods come on two streams: the Job's end can arrive before the
        event of the pod that caused it, whose exit code and reason matter.
        """
        with self.lock:
            job, pods = self._of_run(run_id)
        if job is None or not kstatus.is_finished(job):
            return False  # a failure we inferred from the pod itself (pending too long, crash loop)
        pod = kstatus.newest_pod(pods)
        return pod is not None and ((pod.get("status") or {}).get("phase") or "Pending") in ("Running", "Pending")

    def finished_jobs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [j for j in self.objects["jobs"].values() if kstatus.is_finished(j)]

    def stream(self, kind: str, stop: threading.Event) -> None:
        """Follow one watch stream until `stop`; resume from the last resourceVersion, relist after 410."""
        failures = 0
        while not stop.is_set():
            try:
                if not self.resource_version[kind]:
                    self._relist_kind(kind)
                for type_, obj in self.runner.client.watch(kind, kjobs.SELECTOR, self.resource_version[kind],
                                                           timeout_seconds=self.watch_timeout):
                    failures = 0
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if type_ != "BOOKMARK":
                        with self.lock:
                            name = obj["metadata"]["name"]
                            if type_ == "DELETED":
                                self._put(kind, name, None)
                            elif _rv(obj) >= _rv(self.objects[kind].get(name, {})):
                                self._put(kind, name, slim(obj))
                    if rv:
                        self.resource_version[kind] = rv
                    run_id = kjobs.run_id_of(obj)
                    if run_id and type_ != "BOOKMARK":
                        self.on_change(run_id)
                    if stop.is_set():
                        return
            except Gone:
                log.info("watch %s: resourceVersion expired (410); listing again", kind)
                self.resource_version[kind] = ""
            except (KubeError, StoreError) as exc:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
                log.warning("watch %s: %s; again in %.1fs", kind, exc, delay)
                stop.wait(delay)


class LocalTracker:
    """The local runner's equivalent: status files read on every poll."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def relist(self) -> None:
        pass

    def observations(self, run_ids: Iterable[str]) -> dict[str, RunObservation]:
        return self.runner.observe_all()  # the local runner reads every run's status file at once

    def observation(self, run_id: str) -> RunObservation | None:
        return self.runner.observe(run_id)

    def job_running(self, run_id: str) -> bool:
        return False

    def pod_lags(self, run_id: str) -> bool:
        return False


# The run fields a reconcile reads to tell a quiet run (runs.is_quiet) and a
# launched one: with ten thousand runs, reading and decoding whole run records
# (inputs, outputs...) took 0.4 s of each reconcile, more than the rest of its
# store reads together. tests/test_watcher.py checks is_quiet gives the same
# answer on these fields as on the whole record.
RECONCILE_RUN_FIELDS = ("run_id", "phase", "job_name", "started_at", "observed_reason")

# How long a stopping watcher waits for its watch streams before it releases the lease.
SHUTDOWN_WAIT_SECONDS = 2.0

# The workspace sweep only removes files of tasks that ended long ago: hourly is plenty.
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


class Watcher:
    """Leader-elected tracking loop for every active run."""

    def __init__(self, store: TaskStore, settings: Settings, runner: Runner, *, send: Callable[..., None] = dispatch.send,
                 holder: str | None = None, watch_timeout: int = 60, poll_seconds: float | None = None) -> None:
        self.store = store
        self.settings = settings
        self.runner = runner
        self.send = send
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"
        self.kube = getattr(runner, "kind", "") == "kubernetes"
        self.tracker: Any = KubeTracker(runner, settings, self._on_change, watch_timeout=watch_timeout) \
            if self.kube else LocalTracker(runner)
        self.poll_seconds = poll_seconds if poll_seconds is not None else (
            settings.reconcile_seconds if self.kube else min(settings.reconcile_seconds, 1.0))
        self.lock = threading.Lock()
        self._missing: dict[str, int] = {}
        self._streams: list[threading.Thread] = []
        self._stream_stop = threading.Event()
        self.leader = False
        self._next_workspace_sweep = 0.0

    # Applying observations ---------------------------------------------------------

    def _on_change(self, run_id: str) -> None:
        obs = self.tracker.observation(run_id)
        if obs is None:
            return
        if obs.phase == FAILED and self.tracker.pod_lags(run_id):
            return  # the pod's own end is on its way (or the next reconcile applies what it lists)
        self.apply(obs)

    def apply(self, obs: RunObservation) -> bool:
        """Record one observation (serialised: the streams and the reconcile share it)."""
        with self.lock:
            run = self.store.get_run(obs.run_id)
            if run is None:
                return False  # not a run of this store (or long gone)
            sent = runs.apply_observation(self.store, obs, send=self.send)
            if obs.phase in (SUCCEEDED, FAILED) and self.tracker.job_running(obs.run_id):
                # We decided it failed (pending timeout, crash loop) while its Job still runs: stop it.
                try:
                    self.runner.cancel(obs.run_id)
                except KubeError as exc:
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
        active = self.active_runs()
        report.active = len(active)
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
                    if runs.record_lost(self.store, run_id, "the run's Job disappeared before its end was seen",
                                        send=self.send):
                        report.lost.append(run_id)
        for run_id in list(self._missing):
            if run_id not in active:
                self._missing.pop(run_id, None)
        report.swept = self.sweep()
        report.redriven = self.coordinate()
        return report

    def coordinate(self) -> dict[str, list[str]]:
        """Coordination's periodic share: re-drive tasks whose step was lost, renew or reclaim slots,
        and now and then sweep the workspace of tasks that ended for good."""
        try:
            done = redrive.redrive_stuck(self.store, self.settings)
        except (StoreError, dispatch.QueueUnavailable) as exc:
            log.warning("re-drive failed: %s", exc)
            return {}
        now = time.monotonic()
        if now >= self._next_workspace_sweep:
            self._next_workspace_sweep = now + WORKSPACE_SWEEP_SECONDS
            try:
                self.send(dispatch.CLEANUP_WORKSPACE)
            except dispatch.QueueUnavailable as exc:
                log.warning("could not queue the workspace sweep: %s", exc)
        return {key: value for key, value in done.items() if value}

    def sweep(self) -> list[str]:
        """Delete our finished Jobs older than configured (never a live one, never one not ours)."""
        if not self.kube:
            return self.runner.sweep(self.settings.sweep_after_seconds)
        cutoff = time.time() - self.settings.sweep_after_seconds
        removed = []
        for job in self.tracker.finished_jobs():
            labels = (job.get("metadata") or {}).get("labels") or {}
            at = kstatus.finished_at(job)
            if labels.get(kjobs.LABEL_MANAGED_BY) != kjobs.MANAGED_BY or at is None or at >= cutoff:
                continue
            name = job["metadata"]["name"]
            try:
                if self.runner.client.delete_job(name):
                    removed.append(name)
            except KubeError as exc:
                log.warning("sweep: could not delete Job %s: %s", name, exc)
        return removed

    # The loop ------------------------------------------------------------------------

    def _start_streams(self) -> None:
        if not self.kube or self._streams:
            return
        self._stream_stop = threading.Event()
        for kind in ("jobs", "pods"):
            thread = threading.Thread(target=self.tracker.stream, args=(kind, self._stream_stop),
                                      name=f"watch-{kind}", daemon=True)
            thread.start()
            self._streams.append(thread)

    def _stop_streams(self, wait: float | None = None) -> None:
        """Stop the watch streams; wait for them at most `wait` seconds (default: one watch request)."""
        self._stream_stop.set()
        if wait is None:
            wait = self.tracker.watch_timeout + self.settings.kube_request_timeout + 1
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
                if not token:
                    if self.leader:
                        log.warning("lost the watcher lease; standing by")
                        self._stop_streams()
                    self.leader = False
                    stop.wait(min(ttl / 3, 5.0))
                    continue
                if not self.leader:
                    log.info("watcher lease taken (fencing token %d); adopting every active run", token)
                    self.leader = True
                    next_reconcile = 0.0
                now = time.monotonic()
                if now >= next_reconcile:
                    try:
                        report = self.reconcile()
                        log.info("reconcile: %d active, %d observed, %d finished, %d lost, %d swept",
                                 report.active, report.observed, len(report.finished), len(report.lost),
                                 len(report.swept))
                    except (KubeError, StoreError) as exc:
                        log.warning("reconcile failed: %s", exc)
                    next_reconcile = now + self.poll_seconds
                    self._start_streams()
                stop.wait(max(0.05, min(ttl / 3, next_reconcile - time.monotonic())))
        finally:
            # A stream blocked in a watch request ends only when the request does (up to
            # watch_timeout): on shutdown do not wait for it (its thread is a daemon, and
            # applying an observation is idempotent), so SIGTERM stops the watcher in
            # seconds and the lease is released for a standby at once.
            self._stop_streams(wait=SHUTDOWN_WAIT_SECONDS)
            if self.leader:
                try:
                    self.store.release_lease(LEASE, self.holder)
                except StoreError:
                    pass
            self.leader = False
