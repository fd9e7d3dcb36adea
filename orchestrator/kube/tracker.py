"""Following our Jobs and pods: a cache filled by lists and kept fresh by two watch streams.

The Kubernetes runner's `Tracker` (see `orchestrator.runners.base`): the
watcher relists and reconciles through it every ORCHESTRATOR_RECONCILE_SECONDS,
runs its two streams in threads while it leads, and has it sweep our finished
Jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator import backoff
from orchestrator.kube import jobs as kjobs
from orchestrator.kube import status as kstatus
from orchestrator.kube.client import Gone, KubeError
from orchestrator.runners.base import RunObservation
from orchestrator.settings import Settings

log = logging.getLogger("orchestrator.kube.tracker")


# What the tracker keeps of a Job or pod: what observing a run, sweeping and
# ordering events read. Not the spec (the pod template with its env, volumes
# and containers), nor labels, annotations and status fields nothing reads:
# with ten thousand runs the full objects would take hundreds of megabytes.
# The kept dicts use these (shared) key strings, not one copy per object.
_KEPT_METADATA = ("name", "resourceVersion", "creationTimestamp", "deletionTimestamp")
_KEPT_LABELS = (kjobs.LABEL_MANAGED_BY, kjobs.LABEL_RUN)
_KEPT_ANNOTATIONS = (kjobs.ANNOTATION_RUN_ID,)
_KEPT_STATUS = (
    "phase",
    "reason",
    "message",
    "startTime",
    "completionTime",
    "conditions",
    "active",
    "succeeded",
    "failed",
)
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
        kept_status["containerStatuses"] = [
            {k: c[k] for k in _KEPT_CONTAINER if k in c} for c in status["containerStatuses"] or []
        ]
    return {"metadata": kept, "status": kept_status}


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class KubeTracker:
    """A cache of our Jobs and pods, filled by lists and kept fresh by two watch streams (a `Tracker`)."""

    streams: tuple[str, ...] = ("jobs", "pods")

    def __init__(
        self, runner: Any, settings: Settings, on_change: Callable[[str], None], *, watch_timeout: int = 60
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.poll_seconds = settings.reconcile_seconds
        # A stream blocked in a watch request notices its stop when the request ends.
        self.stream_stop_seconds = watch_timeout + settings.kube_request_timeout + 1
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
            old = cached.get(meta.get("name") or "") if rv else None
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
        listing = (
            client.list_jobs(kjobs.SELECTOR, transform)
            if kind == "jobs"
            else client.list_pods(kjobs.SELECTOR, transform)
        )
        with self.lock:
            before = dict(self.objects[kind])
        self._replace(kind, listing.items, listing.resource_version)
        listed = {o["metadata"]["name"]: o for o in listing.items}
        touched = [
            obj for name, obj in listed.items() if name not in before or not _rv(obj) or _rv(before[name]) != _rv(obj)
        ]
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
        return kstatus.observe(
            run_id, job, pods, now=time.time(), pending_timeout=self.settings.pending_timeout_seconds
        )

    def still_running(self, run_id: str) -> bool:
        """True when the run's Job exists and has not finished (so a failure we inferred must stop it)."""
        with self.lock:
            job, _pods = self._of_run(run_id)
        return job is not None and not kstatus.is_finished(job)

    def end_lags(self, run_id: str) -> bool:
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

    def sweep(self, older_than: float) -> list[str]:
        """Delete our finished Jobs that ended over `older_than` seconds ago (never a live one, never one not ours)."""
        cutoff = time.time() - older_than
        removed = []
        for job in self.finished_jobs():
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

    def stream(self, kind: str, stop: threading.Event) -> None:
        """Follow one watch stream until `stop`; resume from the last resourceVersion, relist after 410."""
        failures = 0
        while not stop.is_set():
            try:
                if not self.resource_version[kind]:
                    self._relist_kind(kind)
                for type_, obj in self.runner.client.watch(
                    kind, kjobs.SELECTOR, self.resource_version[kind], timeout_seconds=self.watch_timeout
                ):
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
            except KubeError as exc:
                failures += 1
                delay = backoff.delay(min(failures, 6), base=0.5, cap=30.0)
                log.warning("watch %s: %s; again in %.1fs", kind, exc, delay)
                stop.wait(delay)
