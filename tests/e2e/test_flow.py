"""End to end: gunicorn, Celery workers, the watcher and Redis as separate processes, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack


def task(task_id: int, *, service: str = "demo", dependencies: list[int] | None = None, **extra) -> dict:
    return {
        "id": task_id, "title": f"Task {task_id}", "description": "Say hello", "details": "Print a greeting",
        "test_strategy": "ACCEPTANCE CRITERIA: it greets", "priority": "medium",
        "dependencies": dependencies or [], "service_name": service, "agent_name": "claude",
        "markdown_files": [{"filename": "task.md", "content": f"# Task {task_id}\n\nGreet.", "file_type": "task"}],
        **extra,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"ORCHESTRATOR_RECONCILE_SECONDS": "1", "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "1"}
    running = Stack(tmp_path_factory.mktemp("e2e"), env=env)
    try:
        running.up()
        yield running
    finally:
        running.down()


def test_submitted_task_runs_to_succeeded_with_workspace_and_logs(stack: Stack) -> None:
    status, body = stack.request("POST", "/api/v1/pm/tasks", task(1))
    assert status == 202, body
    done = stack.wait_status("demo", 1, {"Succeeded", "Failed"})
    assert done["status"] == "Succeeded", done
    assert [r["phase"] for r in done["runs"]] == ["Succeeded"]
    workspace = Path(stack.env["ORCHESTRATOR_WORKSPACE_ROOT"]) / "demo" / "worktrees" / "1"
    assert (workspace / "CLAUDE.md").is_file()
    assert (workspace / ".task" / "1" / "v1" / "task.md").is_file()
    status, logs = stack.request("GET", "/api/v1/pm/tasks/demo/1/logs")
    assert status == 200 and "example agent" in str(logs)
    assert "→ Read: " in str(logs) and '"type"' not in str(logs)  # the conversation as text
    # The example agent prints Claude Code's stream-json at no cost: the quick start shows usage too.
    usage = done["runs"][0]["usage"]
    assert usage["cost_usd"] == 0 and usage["num_turns"] == 1 and usage["session_id"]
    assert done["usage"]["runs"] == 1
    status, spent = stack.request("GET", "/api/v1/services/demo/usage")
    assert status == 200 and spent["total"]["runs"] >= 1, spent
    history = [h["to"] for h in done["history"]]
    assert history[:1] == ["Pending"] and history[-1] == "Succeeded"
    assert "Running" in history or "Launching" in history


def test_dependencies_run_in_order_over_http(stack: Stack) -> None:
    for task_id, deps in ((12, [11]), (11, [10]), (10, [])):
        status, body = stack.request("POST", "/api/v1/pm/tasks", task(task_id, service="chain", dependencies=deps))
        assert status == 202, body
    finished = {}
    for task_id in (10, 11, 12):
        body = stack.wait_status("chain", task_id, {"Succeeded", "Failed"})
        assert body["status"] == "Succeeded", body
        finished[task_id] = body["runs"][-1]["started_at"]
    assert finished[10] < finished[11] < finished[12]


def test_cancel_a_finished_task_is_a_conflict(stack: Stack) -> None:
    stack.request("POST", "/api/v1/pm/tasks", task(20))
    stack.wait_status("demo", 20, {"Succeeded"})
    status, body = stack.request("POST", "/api/v1/pm/tasks/demo/20/cancel", {})
    assert status == 409 and body["code"]
