"""Parallel runs of one service, end to end: gunicorn, a worker, the watcher and Redis as processes, the
local runner, a real bare repository; each task in its own git worktree on its own branch.

Overlap is measured from the timestamps the agents write, never from wall time.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store import TaskStore
from orchestrator.store.base import connect
from orchestrator.workspace import lease as leases
from tests.support.git_server import GitHttpServer, git
from tests.support.stack import Stack

AGENT = Path(__file__).resolve().parents[1] / "support" / "parallel_agent.py"
SERVICE = "demo"
TASKS = 20
CAP = 5


def task(task_id: int, bare: Path, **extra) -> dict:
    return {
        "id": task_id, "title": f"Task {task_id}", "description": "Write notes", "details": "notes.txt",
        "test_strategy": "it has notes", "priority": "medium", "dependencies": [], "service_name": SERVICE,
        "agent_name": "claude", "repository": {"url": str(bare), "branch": "main"},
        "markdown_files": [{"filename": "task.md", "content": f"# Task {task_id}\n", "file_type": "task"}], **extra,
    }


def max_overlap(records: list[dict]) -> int:
    """The most agents running at one instant, from their own start and end stamps."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


class LockSampler(threading.Thread):
    """Samples who holds the service lock, with the time of each sample."""

    def __init__(self, store: TaskStore) -> None:
        super().__init__(daemon=True)
        self.store, self.samples, self.stop = store, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), self.store.lease_holder(leases.lease_name(SERVICE))))
            time.sleep(0.02)


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    server = GitHttpServer(tmp_path / "git", token="unused")
    return server.create_repository("acme/demo", tmp_path / "seed", branches={"main": {"README.md": "# demo\n"}})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {"ORCHESTRATOR_RECONCILE_SECONDS": "1", "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": str(CAP),
           "ORCHESTRATOR_MAX_ACTIVE_RUNS": "50", "ORCHESTRATOR_ALLOW_LOCAL_REPOS": "true",
           "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"{sys.executable} {AGENT} {tmp_path / 'agents'} 2"}
    running = Stack(tmp_path / "stack", env=env)
    try:
        running.start_redis()
        running.start_api()
        running.start_worker("worker0", concurrency=4)
        running.start_watcher()
        yield running
    finally:
        running.down()


def test_twenty_tasks_of_one_service_run_in_parallel_up_to_the_cap_each_on_its_own_branch(
        stack: Stack, bare: Path, tmp_path: Path) -> None:
    store = TaskStore(connect(stack.redis.url))
    sampler = LockSampler(store)
    sampler.start()
    try:
        for task_id in range(1, TASKS + 1):
            status, body = stack.request("POST", "/api/v1/pm/tasks", task(task_id, bare))
            assert status == 202, body
        done = [stack.wait_status(SERVICE, n, {"Succeeded", "Failed"}, timeout=300) for n in range(1, TASKS + 1)]
    finally:
        sampler.stop.set()
        sampler.join()
    assert [d["status"] for d in done] == ["Succeeded"] * TASKS, [d["status_reason"] for d in done]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "agents").glob("*.json"))]
    assert sorted(r["task"] for r in records) == list(range(1, TASKS + 1))

    # At most CAP at once, and really more than one (the agents' own stamps).
    peak = max_overlap(records)
    assert 2 <= peak <= CAP, peak
    workspace = Path(stack.env["ORCHESTRATOR_WORKSPACE_ROOT"]) / SERVICE
    for r in records:
        # Each in its own worktree, on its own branch, never seeing another task's file of the same name.
        assert r["cwd"] == str(workspace / "worktrees" / str(r["task"]))
        assert r["branch"] == f"task-{r['task']}"
        assert r["found_before"] is None and r["after_sleep"] == f"{r['task']}\n"
    for d in done:
        n, run = d["id"], d["runs"][-1]
        assert run["outcome"] == "changes" and run["branch"] == f"task-{n}" and run["commits"] == 1
        # Delivered: the bare repository has the branch, with this task's change only.
        assert git("rev-parse", f"refs/heads/task-{n}", cwd=bare) == run["commit"]
        assert git("diff", "--name-only", "main", f"task-{n}", cwd=bare) == "notes.txt"
        assert git("show", f"task-{n}:notes.txt", cwd=bare) == str(n)

    # The service lock was never held by a run while its agent ran (only for the clone's operations).
    by_run = {r["run"]: r for r in records}
    held = [(t, h) for t, h in sampler.samples if h]
    assert held, "the service lock was never seen held"
    for t, holder in held:
        agent = by_run.get(holder)
        assert agent is None or not agent["start"] <= t <= agent["end"], (holder, t)
    # And it was free while agents ran.
    assert any(h is None and any(r["start"] <= t <= r["end"] for r in records) for t, h in sampler.samples)
