"""Every side effect exactly once, proven by counting what the outside world received (issue #22).

The stack runs as separate processes (redis-server, gunicorn, Celery workers,
the watcher) with the Kubernetes runner against the API emulator, which counts
every Job POST it receives. The only worker is killed with SIGKILL while runs
are under way; the watcher's reconcile loop re-drives what it finds stuck; a
new worker starts. However the messages were lost, re-sent or redelivered,
each run's Job is asked for once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.support.faults import FAST_RECOVERY, FaultStack, succeeded_count, task_body, wait_until
from tests.support.kube_cluster import emulated_cluster, jobs_created, kube_stack
from tests.support.kube_emulator import KubeEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with emulated_cluster() as emu:
        yield emu


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator: KubeEmulator) -> Iterator[FaultStack]:
    with kube_stack(tmp_path_factory.mktemp("exactly-once"), emulator, request_timeout=2) as running:
        yield running


def job_deletes(emu: KubeEmulator) -> int:
    """Job delete requests the API server received (a run that succeeded is never deleted by us: its TTL does)."""
    return emu.count(lambda r: r.method == "DELETE" and "/jobs/" in r.path)


def job_posts(emu: KubeEmulator, names: set[str] | None = None) -> int:
    """Job create requests the API server received (every POST, answered 201 or 409)."""
    return emu.count(lambda r: r.method == "POST" and r.path.endswith("/jobs"))


def launches_received(log: str) -> int:
    return len(re.findall(r"Task orchestrator\.launch_run\[[^\]]+\] received", log))


def test_only_worker_killed_mid_burst_then_replaced_asks_for_each_job_once(stack: FaultStack,
                                                                           emulator: KubeEmulator) -> None:
    services = [f"burst-{i}" for i in range(12)]
    posts_before, deletes_before = job_posts(emulator), job_deletes(emulator)
    jobs_before = jobs_created(emulator)
    for service in services:
        status, body = stack.request("POST", "/api/v1/pm/tasks", task_body(1, service))
        assert status == 202, body
    wait_until(lambda: jobs_created(emulator) - jobs_before >= 3, 60, "three Jobs to exist")
    stack.processes["worker0"].kill()
    # No worker consumes: every queued step waits in its queue while the watcher's reconcile
    # loop finds tasks unchanged past the stuck threshold and re-drives them.
    # Two re-drive periods: before the fix each pass queued the stuck steps once more.
    time.sleep(2 * float(FAST_RECOVERY["ORCHESTRATOR_STUCK_AFTER_SECONDS"]) + 2)
    log_offset = len(stack.processes["worker0"].log())
    stack.start_worker("worker0")
    for service in services:
        task = stack.wait_end(service, 1)
        assert task["status"] == "Succeeded", task
        assert succeeded_count(task) == 1 and len(task["runs"]) == 1, task
        assert jobs_created(emulator, task["runs"][0]["run_id"]) == 1
    new_log = stack.processes["worker0"].log()[log_offset:]
    posts = job_posts(emulator) - posts_before
    assert posts == len(services), (f"{posts} Job POSTs for {len(services)} Jobs; "
                                    f"the new worker received launch_run {launches_received(new_log)} times")
    assert job_deletes(emulator) == deletes_before


@pytest.mark.parametrize("point", ["job.before", "job.between", "job.after"])
def test_worker_killed_around_the_job_create_asks_for_the_job_once(stack: FaultStack, emulator: KubeEmulator,
                                                                   point: str) -> None:
    service = f"job-{point.split('.')[1]}"
    posts_before, deletes_before = job_posts(emulator), job_deletes(emulator)
    stack.processes["worker0"].stop()
    paused = stack.start_paused_worker("paused", point, concurrency=1)
    status, body = stack.request("POST", "/api/v1/pm/tasks", task_body(1, service))
    assert status == 202, body
    stack.wait_hook(point)
    paused.kill()
    stack.start_worker("worker0")
    task = stack.wait_end(service, 1)
    assert task["status"] == "Succeeded", task
    assert succeeded_count(task) == 1 and len(task["runs"]) == 1, task
    run_id = task["runs"][0]["run_id"]
    assert jobs_created(emulator, run_id) == 1
    # Killed before the create: the fresh worker's POST is the only one. Between the create and its
    # record: the killed worker's POST, and the Job found by a GET. After the record: nothing asked again.
    assert job_posts(emulator) - posts_before == 1
    assert job_deletes(emulator) == deletes_before


def test_a_cancelled_run_has_its_job_deleted_once(stack: FaultStack, emulator: KubeEmulator) -> None:
    """The PM's cancel reaches the API server as one DELETE of the run's Job, and the agent stops."""
    deletes_before = job_deletes(emulator)
    status, body = stack.request("POST", "/api/v1/pm/tasks", task_body(1, "hold-cancel"))
    assert status == 202, body
    wait_until(lambda: stack.task("hold-cancel", 1)["status"] == "Running", 60, "the run to be Running")
    run_id = stack.task("hold-cancel", 1)["runs"][0]["run_id"]
    status, body = stack.request("POST", "/api/v1/pm/tasks/hold-cancel/1/cancel", {})
    assert status in (200, 202), body
    wait_until(lambda: emulator.get("jobs", run_id) is None, 60, "the Job to be deleted")
    wait_until(lambda: stack.task("hold-cancel", 1)["runs"][0]["phase"] == "Cancelled", 60, "the run's end")
    assert stack.task("hold-cancel", 1)["status"] == "Cancelled"
    assert job_deletes(emulator) - deletes_before == 1
