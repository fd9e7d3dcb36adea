"""The Kubernetes runner end to end against the API emulator, with faults.

The stack (redis, gunicorn, workers, watcher: separate processes) runs with
ORCHESTRATOR_RUNNER=kubernetes and a KUBECONFIG pointing at the emulator,
which serves real HTTP from a thread of this test process. A small stand-in
for the Job controller starts a pod for every new Job and completes it.
Every Job the API server created is counted from the emulator's own events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from orchestrator import runs
from orchestrator.store import TaskStore, connect
from tests.support.faults import ALL_SECRETS, FaultStack, assert_no_secret_leaked, leaks_in_text, succeeded_count, \
    task_body
from tests.support.kube_cluster import emulated_cluster, jobs_created, kube_stack
from tests.support.kube_emulator import Fault, KubeEmulator


def create_requests(emu: KubeEmulator) -> int:
    return emu.count(lambda r: r.method == "POST" and r.path.endswith("/jobs"))


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with emulated_cluster() as emu:
        yield emu


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator: KubeEmulator) -> Iterator[FaultStack]:
    with kube_stack(tmp_path_factory.mktemp("kube-faults"), emulator, request_timeout=1) as running:
        yield running


def submit(stack: FaultStack, service: str, task_id: int = 1) -> None:
    status, body = stack.request("POST", "/api/v1/pm/tasks", task_body(task_id, service))
    assert status == 202, body


def assert_one_job(stack: FaultStack, emu: KubeEmulator, service: str, task_id: int = 1) -> dict:
    task = stack.wait_end(service, task_id)
    assert task["status"] == "Succeeded", task
    assert succeeded_count(task) == 1 and len(task["runs"]) == 1, task
    assert jobs_created(emu, task["runs"][0]["run_id"]) == 1
    return task


def test_a_task_runs_as_one_job(stack: FaultStack, emulator: KubeEmulator) -> None:
    submit(stack, "kube-plain")
    assert_one_job(stack, emulator, "kube-plain")


def test_worker_killed_after_creating_the_job_leaves_one_job(stack: FaultStack, emulator: KubeEmulator) -> None:
    stack.processes["worker0"].stop()
    paused = stack.start_paused_worker("paused", "launch_run", concurrency=1)
    submit(stack, "kube-kill")
    stack.wait_hook("launch_run")  # the Job exists; the run does not record it yet
    paused.kill()
    stack.start_worker("worker0")
    assert_one_job(stack, emulator, "kube-kill")


def test_500_and_429_with_retry_after_are_retried_into_one_job(stack: FaultStack, emulator: KubeEmulator) -> None:
    before = create_requests(emulator)
    emulator.faults[:] = [Fault(status=500, method="POST", path_contains="/jobs", times=2),
                          Fault(status=429, method="POST", path_contains="/jobs", times=1, retry_after=1)]
    submit(stack, "kube-flaky")
    assert_one_job(stack, emulator, "kube-flaky")
    assert [f.hits for f in emulator.faults] == [2, 1]
    assert create_requests(emulator) - before == 4  # two 500s, one 429, then the create
    log = "".join(p.log() for n, p in stack.processes.items() if n.startswith("worker"))
    assert "answered 500; retry" in log and "answered 429; retry" in log


def test_a_hanging_api_server_times_out_and_is_retried(stack: FaultStack, emulator: KubeEmulator) -> None:
    emulator.faults[:] = [Fault(hang=4, method="POST", path_contains="/jobs", times=1)]
    submit(stack, "kube-hang")
    assert_one_job(stack, emulator, "kube-hang")
    assert emulator.faults[0].hits == 1


def test_failures_past_the_retry_limit_fail_the_task_with_the_reason(stack: FaultStack,
                                                                     emulator: KubeEmulator) -> None:
    fault = Fault(status=500, method="POST", path_contains="/jobs", times=1000)
    emulator.faults[:] = [fault]
    try:
        submit(stack, "kube-down")
        task = stack.wait_end("kube-down", 1, timeout=60)
    finally:
        emulator.faults.clear()
    assert task["status"] == "Failed", task
    assert "launch failed after" in task["status_reason"] and "500" in task["status_reason"], task["status_reason"]
    # Each of the step's tries (the first and runs.LAUNCH_RETRIES more, after a wait of at most half
    # ORCHESTRATOR_STUCK_AFTER_SECONDS) is the first request and ORCHESTRATOR_KUBE_RETRIES=3 retries.
    assert fault.hits == 4 * (runs.LAUNCH_RETRIES + 1)
    assert len(task["runs"]) == 1 and jobs_created(emulator, task["runs"][0]["run_id"]) == 0
    # The worker is free again: the next task runs.
    submit(stack, "kube-down", 2)
    assert_one_job(stack, emulator, "kube-down", 2)


def test_no_secret_in_job_specs_logs_responses_or_files(stack: FaultStack, emulator: KubeEmulator) -> None:
    with emulator.cond:
        created = [obj for _rv, kind, type_, obj in emulator.state.events if kind == "jobs" and type_ == "ADDED"]
    assert created
    for job in created:
        text = json.dumps(job)
        assert not leaks_in_text(text, ALL_SECRETS), job["metadata"]["name"]
        env = {e["name"]: e for c in job["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
        assert "secretKeyRef" in env["ANTHROPIC_API_KEY"]["valueFrom"]
    # SIGTERM stops the watcher promptly although its watch requests are open: it releases its
    # lease itself (before the fix it waited for the open watch to time out and was SIGKILLed first).
    stack.processes["watcher"].stop(timeout=10)
    client = connect(stack.redis.url)
    try:
        assert TaskStore(client).lease_holder("watcher") is None
    finally:
        client.close()
    stack.down()
    assert_no_secret_leaked(stack)
