"""The Kubernetes runner: one Job per run, built by `orchestrator.kube.jobs`, sent by `orchestrator.kube.client`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from orchestrator.kube import jobs, status
from orchestrator.kube.client import KubeClient, PermanentKubeError
from orchestrator.kube.tracker import KubeTracker
from orchestrator.runners.base import Lines, RunObservation, RunRequest
from orchestrator.runners.errors import LogsUnavailable
from orchestrator.settings import Settings


class KubernetesRunner:
    """Runs agents as Jobs in the configured namespace."""

    kind = "kubernetes"

    def __init__(self, settings: Settings, client: KubeClient | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> KubeClient:
        # Built on first use: importing or constructing the runner contacts nothing.
        if self._client is None:
            self._client = KubeClient.from_settings(self.settings)
        return self._client

    def launch(self, request: RunRequest) -> str:
        """Create the run's Job, or adopt it when a previous delivery of the step created it."""
        body = jobs.build_job(request, self.settings)
        job, created = self.client.create_job(body)
        name = job["metadata"]["name"]
        if not created and jobs.run_id_of(job) != request.run_id:
            raise PermanentKubeError(f"a Job named {name} exists and does not belong to run {request.run_id}", 409)
        return name

    def find(self, request: RunRequest) -> str | None:
        """The run's Job when it exists already (an interrupted launch may have created it), else None."""
        job = self.client.get_job(jobs.name_for(request.run_id))
        if job is None:
            return None
        if jobs.run_id_of(job) != request.run_id:
            raise PermanentKubeError(
                f"a Job named {job['metadata']['name']} exists and does not belong to run {request.run_id}", 409
            )
        return str(job["metadata"]["name"])

    def observe(self, run_id: str) -> RunObservation | None:
        """The run's state from its Job and pods (two requests)."""
        name = jobs.name_for(run_id)
        job = self.client.get_job(name)
        pods = self.client.list_pods(f"{jobs.SELECTOR},{jobs.LABEL_RUN}={name}").items
        return status.observe(run_id, job, pods, now=time.time(), pending_timeout=self.settings.pending_timeout_seconds)

    def cancel(self, run_id: str) -> None:
        """Delete the Job and its pods (foreground); nothing is asked when it is gone or going already.

        A cancel is delivered more than once (a redelivered step after its
        worker died past the DELETE, a stall and a PM cancel together): the GET
        first makes every later delivery a read, so the API server receives one
        DELETE per run, as it receives one create.
        """
        name = jobs.name_for(run_id)
        job = self.client.get_job(name)
        if job is None or job.get("metadata", {}).get("deletionTimestamp"):
            return
        self.client.delete_job(name)

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The newest pod's agent log (after retries, the attempt that counts)."""
        name = jobs.name_for(run_id)
        pods = self.client.list_pods(f"{jobs.SELECTOR},{jobs.LABEL_RUN}={name}").items
        pod = status.newest_pod(pods)
        if pod is None:
            raise LogsUnavailable(
                f"run {run_id} has no pod any more (its Job {name} was removed after it finished, or never "
                "started a pod); its logs are no longer available"
            )
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            raise LogsUnavailable(f"run {run_id} has not started yet (its pod is Pending); no logs so far")
        aborter = _Aborter()
        # A follow ends by ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS: its reader need not wait longer.
        read_timeout = float(min(self.settings.max_timeout_seconds, self.settings.log_follow_max_seconds + 60))
        return Lines(
            self.client.pod_log(
                pod["metadata"]["name"], follow=follow, tail=tail, opened=aborter.opened, read_timeout=read_timeout
            ),
            aborter.abort,
        )

    def tracker(self, on_change: Callable[[str], None], *, watch_timeout: int = 60) -> KubeTracker:
        """A cache of our Jobs and pods kept fresh by two watch streams."""
        return KubeTracker(self, self.settings, on_change, watch_timeout=watch_timeout)


class _Aborter:
    """Shuts a log stream's connection down from another thread, even before it is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: Any = None
        self._aborted = False

    def opened(self, response: Any) -> None:
        with self._lock:
            self._response = response
            if self._aborted:
                response.shutdown()

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            if self._response is not None:
                self._response.shutdown()  # the waiting read ends at once (urllib3 2.3+)
