"""The Kubernetes client over real HTTP: adoption, retries with backoff, error mapping, watch, logs."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.kube.client import Gone, KubeClient, PermanentKubeError, TransientKubeError
from tests.support.kube_emulator import Fault, KubeEmulator

OURS = {"app.kubernetes.io/managed-by": "orchestrator"}


def job(name: str, labels: dict | None = None) -> dict:
    labels = OURS if labels is None else labels
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Never",
                                                                           "containers": []}}}}


def posts(emulator: KubeEmulator) -> int:
    return emulator.count(lambda r: r.method == "POST")


def test_create_then_adopt_on_conflict(kube_client: KubeClient, emulator: KubeEmulator) -> None:
    created, fresh = kube_client.create_job(job("a-1"))
    adopted, again = kube_client.create_job(job("a-1"))
    assert fresh and not again
    assert adopted["metadata"]["uid"] == created["metadata"]["uid"]
    assert len(emulator.items("jobs")) == 1


def test_lists_select_by_label(kube_client: KubeClient) -> None:
    kube_client.create_job(job("ours"))
    kube_client.create_job(job("theirs", {"app": "other"}))
    listing = kube_client.list_jobs("app.kubernetes.io/managed-by=orchestrator")
    assert [j["metadata"]["name"] for j in listing.items] == ["ours"]
    assert int(listing.resource_version) > 0


def test_429_honours_retry_after(emulator: KubeEmulator) -> None:
    waits: list[float] = []
    client = KubeClient(emulator.api_client(), "default", timeout=2, retries=3, backoff=0.001, sleep=waits.append)
    emulator.faults.append(Fault(status=429, retry_after=7, times=2))
    client.create_job(job("a-1"))
    assert len(waits) == 2 and all(w >= 7 for w in waits)
    assert posts(emulator) == 3


def test_5xx_is_retried_with_growing_jittered_backoff(emulator: KubeEmulator) -> None:
    waits: list[float] = []
    client = KubeClient(emulator.api_client(), "default", timeout=2, retries=4, backoff=1.0, max_backoff=100,
                        sleep=waits.append)
    emulator.faults.append(Fault(status=503, times=4))
    client.list_jobs("")
    assert len(waits) == 4
    for attempt, wait in enumerate(waits):
        assert 0.5 * 2 ** attempt <= wait <= 2 ** attempt


def test_5xx_beyond_the_limit_is_a_transient_failure(kube_client: KubeClient, emulator: KubeEmulator,
                                                     sleeps: list[float]) -> None:
    emulator.faults.append(Fault(status=500, times=100))
    with pytest.raises(TransientKubeError, match="500 after 4 attempts"):
        kube_client.create_job(job("a-1"))
    assert posts(emulator) == 4 and len(sleeps) == 3


def test_a_hung_request_times_out_and_is_retried(emulator: KubeEmulator, sleeps: list[float]) -> None:
    client = KubeClient(emulator.api_client(), "default", timeout=0.3, retries=2, backoff=0.001,
                        sleep=sleeps.append)
    emulator.faults.append(Fault(hang=1.0, times=1, method="POST"))
    created, fresh = client.create_job(job("a-1"))
    assert fresh and len(sleeps) == 1


def test_hanging_for_ever_fails_after_the_limit(emulator: KubeEmulator, sleeps: list[float]) -> None:
    client = KubeClient(emulator.api_client(), "default", timeout=0.2, retries=1, backoff=0.001,
                        sleep=sleeps.append)
    emulator.faults.append(Fault(hang=0.6, times=5, method="GET"))
    started = time.monotonic()
    with pytest.raises(TransientKubeError, match="did not answer after 2 attempts"):
        client.get_job("a-1")
    assert time.monotonic() - started < 5


def test_rbac_403_names_the_missing_permission(kube_client: KubeClient, emulator: KubeEmulator) -> None:
    emulator.faults.append(Fault(status=403, times=1))
    with pytest.raises(PermanentKubeError) as info:
        kube_client.create_job(job("a-1"))
    assert "permission to create jobs.batch in namespace 'default'" in str(info.value)
    assert posts(emulator) == 1  # not retried


def test_other_4xx_fail_at_once_with_kubernetes_message(kube_client: KubeClient, emulator: KubeEmulator) -> None:
    with pytest.raises(PermanentKubeError, match="metadata.name: Required value") as info:
        kube_client.create_job(job(""))
    assert info.value.status == 422


def test_missing_objects(kube_client: KubeClient) -> None:
    assert kube_client.get_job("nope") is None
    assert kube_client.delete_job("nope") is False


def test_watch_streams_events_and_410_means_list_again(kube_client: KubeClient, emulator: KubeEmulator) -> None:
    listing = kube_client.list_jobs("")
    threading.Timer(0.2, lambda: emulator.put("jobs", job("late"))).start()
    events = list(kube_client.watch("jobs", "app.kubernetes.io/managed-by=orchestrator",
                                    listing.resource_version, timeout_seconds=1))
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "late")]
    emulator.put("jobs", job("later"))
    emulator.compact()
    with pytest.raises(Gone):
        list(kube_client.watch("jobs", "", listing.resource_version, timeout_seconds=1))


def test_pod_log_tail_and_follow(kube_client: KubeClient, emulator: KubeEmulator) -> None:
    kube_client.create_job(job("a-1"))
    pod = emulator.start_pod("a-1", suffix="x1")["metadata"]["name"]
    emulator.append_log(pod, "one", "two", "three")
    assert list(kube_client.pod_log(pod, tail=2)) == ["two", "three"]

    def finish() -> None:
        emulator.append_log(pod, "four")
        emulator.terminate_pod(pod, 0)

    threading.Timer(0.3, finish).start()
    assert list(kube_client.pod_log(pod, follow=True)) == ["one", "two", "three", "four"]
