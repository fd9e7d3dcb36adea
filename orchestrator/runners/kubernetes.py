"""The Kubernetes runner: one Job per run, built by `orchestrator.kube.jobs`, sent by `orchestrator.kube.client`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.kube import jobs, status
from orchestrator.kube.client import KubeClient, Listing, PermanentKubeError, Transform
from orchestrator.runners.base import RunObservation, RunRequest
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

    def observe(self, run_id: str) -> RunObservation | None:
        """The run's state from its Job and pods (two requests)."""
        name = jobs.name_for(run_id)
        job = self.client.get_job(name)
        pods = self.client.list_pods(f"{jobs.SELECTOR},{jobs.LABEL_RUN}={name}").items
        return status.observe(run_id, job, pods, now=time.time(),
                              pending_timeout=self.settings.pending_timeout_seconds)

    def snapshot(self, transform: Transform | None = None) -> tuple[Listing, Listing]:
        """Every Job and pod of ours: two requests however many runs there are (`transform`: see list_jobs)."""
        return self.client.list_jobs(jobs.SELECTOR, transform), self.client.list_pods(jobs.SELECTOR, transform)

    def observe_all(self) -> dict[str, RunObservation]:
        """Observations of every run that has a Job or pod, from one snapshot."""
        job_list, pod_list = self.snapshot()
        return observe_many(job_list.items, pod_list.items, now=time.time(),
                            pending_timeout=self.settings.pending_timeout_seconds)

    def cancel(self, run_id: str) -> None:
        """Delete the Job and its pods (foreground); nothing happens when it is gone already."""
        self.client.delete_job(jobs.name_for(run_id))

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The newest pod's agent log (after retries, the attempt that counts)."""
        name = jobs.name_for(run_id)
        pods = self.client.list_pods(f"{jobs.SELECTOR},{jobs.LABEL_RUN}={name}").items
        pod = status.newest_pod(pods)
        if pod is None:
            raise LogsUnavailable(
                f"run {run_id} has no pod any more (its Job {name} was removed after it finished, or never "
                "started a pod); its logs are no longer available")
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            raise LogsUnavailable(f"run {run_id} has not started yet (its pod is Pending); no logs so far")
        return self.client.pod_log(pod["metadata"]["name"], follow=follow, tail=tail,
                                   read_timeout=float(self.settings.max_timeout_seconds))


def group_by_run(jobs_: list[Mapping[str, Any]], pods: list[Mapping[str, Any]]
                 ) -> tuple[dict[str, Mapping[str, Any]], dict[str, list[Mapping[str, Any]]]]:
    """Jobs and pods keyed by the run id they carry (objects without one are not ours)."""
    by_job: dict[str, Mapping[str, Any]] = {}
    for job in jobs_:
        run_id = jobs.run_id_of(job)
        if run_id:
            by_job[run_id] = job
    by_pods: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for pod in pods:
        run_id = jobs.run_id_of(pod)
        if run_id:
            by_pods[run_id].append(pod)
    return by_job, by_pods


def observe_many(jobs_: list[Mapping[str, Any]], pods: list[Mapping[str, Any]], *, now: float,
                 pending_timeout: float) -> dict[str, RunObservation]:
    """One observation per run present in the lists."""
    by_job, by_pods = group_by_run(jobs_, pods)
    found: dict[str, RunObservation] = {}
    for run_id in set(by_job) | set(by_pods):
        obs = status.observe(run_id, by_job.get(run_id), by_pods.get(run_id, []), now=now,
                             pending_timeout=pending_timeout)
        if obs is not None:
            found[run_id] = obs
    return found
