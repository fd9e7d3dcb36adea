"""Workers killed (SIGKILL) or stopped (SIGTERM) in the middle of each step; the watcher killed while runs end.

The whole system runs as separate processes (redis-server with AOF, gunicorn,
Celery workers, the watcher) with the local runner, driven over HTTP. A worker
started with tests/support/step_hooks.py pauses inside one step at its worst
moment; the test kills it there and starts a fresh worker. The broker's
visibility timeout stays at its default (an hour), so the lost message is never
redelivered within the test: recovery comes from the watcher's reconcile loop
re-driving the task from the store's own record.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.faults import FaultStack, assert_no_secret_leaked, succeeded_count, task_body, wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    running = FaultStack(tmp_path_factory.mktemp("worker-faults"))
    try:
        running.up()
        yield running
    finally:
        running.down()


def unacked_steps(stack: FaultStack) -> list[str]:
    """Step names of the messages the broker holds as taken but never acknowledged."""
    client = redis.Redis.from_url(stack.redis.url)
    try:
        return [json.loads(raw)[0]["headers"]["task"] for raw in client.hvals("unacked")]
    finally:
        client.close()


def launches(stack: FaultStack, run_id: str) -> int:
    """How often the local runner started an agent for the run (each start prints one banner)."""
    output = Path(stack.env["ORCHESTRATOR_DATA_DIR"]) / "runs" / run_id / "output.log"
    if not output.exists():
        return 0
    return sum(1 for line in output.read_text().splitlines() if line.startswith("example agent: run "))


def temp_leftovers(stack: FaultStack) -> list[str]:
    root = Path(stack.env["ORCHESTRATOR_WORKSPACE_ROOT"])
    return [str(p) for p in root.rglob("*") if ".orch-tmp-" in p.name or p.name.endswith(".tmp")]


def assert_ran_once(stack: FaultStack, service: str, task_id: int) -> dict:
    """The task Succeeded once, with one run, and that run's agent started exactly once."""
    task = stack.wait_end(service, task_id)
    assert task["status"] == "Succeeded", task
    assert succeeded_count(task) == 1, task["history"]
    assert len(task["runs"]) == 1, task["runs"]
    run_id = task["runs"][0]["run_id"]
    assert launches(stack, run_id) == 1
    run_dirs = [p.name for p in (Path(stack.env["ORCHESTRATOR_DATA_DIR"]) / "runs").iterdir()
                if p.name.startswith(f"{service}-{task_id}-")]
    assert run_dirs == [run_id]
    workspace = Path(stack.env["ORCHESTRATOR_WORKSPACE_ROOT"]) / service / "worktrees" / str(task_id)
    assert (workspace / "CLAUDE.md").is_file() and (workspace / ".task" / str(task_id) / "v1" / "task.md").is_file()
    return task


@pytest.mark.parametrize("step", ["admit", "prepare_workspace", "launch_run", "finish_run"])
def test_worker_killed_mid_step_is_recovered_by_the_reconcile_loop(stack: FaultStack, step: str) -> None:
    service = f"kill-{step.replace('_', '-')}"
    stack.processes["worker0"].stop()
    paused = stack.start_paused_worker("paused", step, concurrency=1)
    status, body = stack.request("POST", "/api/v1/pm/tasks", task_body(1, service))
    assert status == 202, body
    stack.wait_hook(step)
    paused.kill()  # SIGKILL, pool processes included: the step's message is never acknowledged
    stack.start_worker("worker0")
    assert_ran_once(stack, service, 1)
    assert not temp_leftovers(stack)
    # The killed worker's message is still parked, unacknowledged, in the broker (redelivered only
    # after the visibility timeout of an hour): the recovery came from the store's record.
    assert f"orchestrator.{step}" in unacked_steps(stack), unacked_steps(stack)


def test_warm_shutdown_mid_step_finishes_it_and_leaves_nothing_half_written(stack: FaultStack) -> None:
    service = "warm-stop"
    stack.processes["worker0"].stop()
    paused = stack.start_paused_worker("paused", "prepare_workspace", seconds=2, concurrency=1)
    status, body = stack.request("POST", "/api/v1/pm/tasks", task_body(1, service))
    assert status == 202, body
    stack.wait_hook("prepare_workspace")
    assert paused.proc is not None
    os.kill(paused.proc.pid, signal.SIGTERM)  # warm shutdown: to the main process only, as `kill` would
    paused.proc.wait(timeout=60)
    log = paused.log()
    assert "TEST HOOK: resuming prepare_workspace" in log  # the step ran to its end before the worker left
    stack.start_worker("worker0")
    assert_ran_once(stack, service, 1)
    assert not temp_leftovers(stack)


def test_watcher_killed_while_runs_end_misses_nothing_and_finishes_nothing_twice(stack: FaultStack) -> None:
    services = [f"watch-{i}" for i in range(4)]
    watcher = stack.processes["watcher"]
    watcher.kill()
    for service in services[:2]:
        assert stack.request("POST", "/api/v1/pm/tasks", task_body(1, service))[0] == 202
    # Without a watcher the runs launch and their agents end, but nobody records it.
    runs_dir = Path(stack.env["ORCHESTRATOR_DATA_DIR"]) / "runs"

    def ended(service: str) -> bool:
        status = runs_dir / f"{service}-1-v1-a1" / "status.json"
        return status.exists() and json.loads(status.read_text()).get("phase") == "Succeeded"

    wait_until(lambda: all(ended(s) for s in services[:2]), 60, "the agents to end without a watcher")
    for service in services[:2]:
        assert stack.task(service, 1)["status"] in {"Launching", "Running"}
    stack.start_watcher()
    for service in services[2:]:
        assert stack.request("POST", "/api/v1/pm/tasks", task_body(1, service))[0] == 202
    # Killed again while the second pair runs, and restarted at once.
    wait_until(lambda: any(stack.task(s, 1)["status"] in {"Launching", "Running", "Succeeded"}
                           for s in services[2:]), 60, "the second pair to launch")
    stack.processes["watcher"].kill()
    stack.start_watcher()
    for service in services:
        assert_ran_once(stack, service, 1)


def test_no_secret_in_any_log_response_or_file(stack: FaultStack) -> None:
    # A few bad requests too: wrong token, invalid body, unknown task, bad webhook signature.
    stack.raw("GET", "/api/v1/pm/tasks", None, {"Authorization": "Bearer wrong-token"})
    stack.raw("POST", "/api/v1/pm/tasks", b"{not json", {"Authorization": f"Bearer {stack.token}",
                                                         "Content-Type": "application/json"})
    stack.request("POST", "/api/v1/pm/tasks", task_body(1, "Bad Service"))
    stack.request("GET", "/api/v1/pm/tasks/nope/1")
    stack.raw("POST", "/webhooks/github", b"{}", {"X-Hub-Signature-256": "sha256=" + "0" * 64,
                                                  "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1",
                                                  "Content-Type": "application/json"})
    stack.down()
    assert_no_secret_leaked(stack)
