"""The Kubernetes runner: observe, logs from the right pod, plain words when the pod is gone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.runners.errors import LogsUnavailable
from orchestrator.runners.kubernetes import KubernetesRunner
from tests.support.kube_emulator import KubeEmulator


def request(run_id: str = "billing-1-v1-a1") -> RunRequest:
    return RunRequest(run_id=run_id, service="billing", task_id=1, version=1, attempt=1,
                      agent=AgentSpec(name="claude", image="img:1", command=("claude",)),
                      workspace_dir=Path("/w/billing"))


def test_observe_follows_the_job(kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    assert kube_runner.observe("billing-1-v1-a1") is None
    kube_runner.launch(request())
    assert kube_runner.observe("billing-1-v1-a1").phase == "Pending"
    pod = emulator.start_pod("billing-1-v1-a1")["metadata"]["name"]
    assert kube_runner.observe("billing-1-v1-a1").phase == "Running"
    emulator.terminate_pod(pod, 0)
    emulator.finish_job("billing-1-v1-a1", "Complete")
    obs = kube_runner.observe("billing-1-v1-a1")
    assert (obs.phase, obs.exit_code) == ("Succeeded", 0)


def test_logs_come_from_the_newest_pod_after_a_retry(kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    kube_runner.launch(request())
    first = emulator.start_pod("billing-1-v1-a1", suffix="aaaaa", age=60)["metadata"]["name"]
    emulator.append_log(first, "attempt one")
    emulator.set_pod_status(first, {"phase": "Failed", "reason": "Evicted"})
    second = emulator.start_pod("billing-1-v1-a1", suffix="bbbbb")["metadata"]["name"]
    emulator.append_log(second, "attempt two", "working")
    assert list(kube_runner.logs("billing-1-v1-a1", tail=1)) == ["working"]

    def finish() -> None:
        emulator.append_log(second, "done")
        emulator.terminate_pod(second, 0)

    threading.Timer(0.3, finish).start()
    assert list(kube_runner.logs("billing-1-v1-a1", follow=True)) == ["attempt two", "working", "done"]


def test_logs_after_the_pod_is_gone_say_so(kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    kube_runner.launch(request())
    emulator.delete("jobs", "billing-1-v1-a1")
    with pytest.raises(LogsUnavailable, match="no pod any more"):
        kube_runner.logs("billing-1-v1-a1")


def test_a_foreign_job_with_our_name_is_not_adopted(kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    emulator.put("jobs", {"metadata": {"name": "billing-1-v1-a1", "namespace": "default"},
                          "spec": {"template": {"spec": {"containers": []}}}})
    with pytest.raises(Exception, match="does not belong to run"):
        kube_runner.launch(request())


def test_the_runner_builds_no_client_until_used(kube_settings) -> None:
    runner = KubernetesRunner(kube_settings)  # no kubeconfig, not in a cluster: fine until used
    assert runner._client is None


def _job_deletes(emulator: KubeEmulator) -> int:
    return emulator.count(lambda r: r.method == "DELETE" and "/jobs/" in r.path)


def test_a_cancel_delivered_twice_deletes_the_job_once(kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    """A redelivered cancel_run (its worker killed after the DELETE) finds the Job gone and asks nothing more."""
    kube_runner.launch(request())
    kube_runner.cancel("billing-1-v1-a1")
    kube_runner.cancel("billing-1-v1-a1")
    assert emulator.get("jobs", "billing-1-v1-a1") is None
    assert _job_deletes(emulator) == 1


def test_cancelling_a_run_whose_job_never_existed_deletes_nothing(kube_runner: KubernetesRunner,
                                                                  emulator: KubeEmulator) -> None:
    kube_runner.cancel("billing-2-v1-a1")  # cancelled while it was still preparing
    assert _job_deletes(emulator) == 0


def test_a_job_being_deleted_is_not_deleted_again(kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    kube_runner.launch(request())
    emulator.patch("jobs", "billing-1-v1-a1", {"metadata": {"deletionTimestamp": "2026-11-30T00:00:00Z"}})
    kube_runner.cancel("billing-1-v1-a1")
    assert _job_deletes(emulator) == 0
