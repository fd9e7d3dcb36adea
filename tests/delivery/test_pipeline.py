"""A three-stage pipeline with the real preparation step, a real repository and the real example agent.

Each stage's agent runs as a process with the environment the local runner
gives it; stage 2 reads stage 1's handoff.md and stage 3 reads stage 2's, which
preparing the next stage no longer deletes. Delivery runs after every stage: the
pull request is a draft until the last stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import dispatch, operations
from orchestrator.coordination.stages import parse_pipelines
from orchestrator.delivery.step import deliver_run
from orchestrator.runners.local import LocalRunner
from orchestrator.runs import build_request
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.workspace.step import prepare_for_run
from tests.delivery.conftest import REPO_URL
from tests.support.coordination_harness import Driver
from tests.support.fake_github import FakeGitHub
from tests.support.git_server import GitHttpServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES = json.dumps({"three": [
    {"name": "implement", "agent": "claude", "prompt": "implement it"},
    {"name": "review", "agent": "reviewer", "prompt": "review it"},
    {"name": "fix", "agent": "claude", "prompt": "fix what the review found"},
]})


def launch_agent(store: TaskStore, settings: Settings, run_id: str) -> None:
    """launch_run and the watcher: run the example agent as a process with the local runner's environment."""
    run, task, _ = store.get_run_with_task(run_id)
    if task is None or task.current_run != run_id or task.status != Status.LAUNCHING.value:
        return
    service, task_id = run.service, int(run.task_id)
    store.transition(service, task_id, Status.RUNNING, reason="agent started", actor="test", expect=Status.LAUNCHING)
    request = build_request(settings, task, run)
    env = LocalRunner(settings).environment(request)
    env["PYTHONPATH"] = str(REPO_ROOT)
    workspace = settings.workspace_root / service / "worktrees" / str(task_id)
    agent = subprocess.run([sys.executable, "-m", "orchestrator.agents.example"], cwd=workspace, env=env,
                           capture_output=True, text=True, timeout=60)
    if run.stage == "implement":
        (workspace / "login.py").write_text("def login(): ...\n")  # a change, left uncommitted
    store.update_run(run_id, phase="Succeeded" if agent.returncode == 0 else "Failed", exit_code=agent.returncode,
                     finished_at=time.time(), retryable="0", outputs={"log_tail": agent.stdout[-2000:]})
    dispatch.send(Step.FINISH_RUN, run_id)


def test_three_stages_read_each_others_handoff_and_deliver_one_pull_request(
        store: TaskStore, settings: Settings, tmp_path: Path, remote: Path, git_server: GitHttpServer,
        github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings.replace(github_token="ghp_TESTtoken0123456789abcdefSECRET", workspace_root=tmp_path / "ws",
                           git_timeout_seconds=30, github_api_url=github.url, pipelines=parse_pipelines(PIPELINES))
    drive = Driver(store, cfg)
    drive.steps[Step.PREPARE_WORKSPACE] = lambda run_id: prepare_for_run(store, cfg, run_id)
    drive.steps[Step.LAUNCH_RUN] = lambda run_id: launch_agent(store, cfg, run_id)
    drive.steps[Step.DELIVER_RUN] = lambda run_id: deliver_run(store, cfg, run_id)
    operations.submit_task(store, {
        "id": 5, "title": "Add login", "service_name": "shop", "agent_name": "claude", "priority": "high",
        "dependencies": [], "pipeline": "three", "description": "Users log in.",
        "markdown_files": [{"filename": "task.md", "content": "Log in with email.", "file_type": "task"}],
        "repository": {"url": REPO_URL, "branch": "main"},
    }, actor="pm")
    drive.run()

    task = store.require_task("shop", 5)
    assert task.status == "Succeeded", task.status_reason
    runs = store.list_runs("shop", 5)
    assert [r.stage for r in runs] == ["implement", "review", "fix"]
    ws = cfg.workspace_root / "shop" / "worktrees" / "5"
    handoffs = [ws / ".task" / "5" / "runs" / r.run_id / "handoff.md" for r in runs]
    assert all(path.is_file() for path in handoffs)  # every stage's outputs survived the next preparation
    first, second, third = (path.read_text() for path in handoffs)
    assert runs[1].inputs["handoff_file"] == f".task/5/runs/{runs[0].run_id}/handoff.md"
    assert runs[2].inputs["handoff_file"] == f".task/5/runs/{runs[1].run_id}/handoff.md"
    assert first.strip() in second and "Received from the previous stage" in second
    assert second.strip() in third and f"Hand-off from run {runs[0].run_id}" in third
    assert "the task is: Add login" in first  # the title from task.md, not CLAUDE.md's comment line

    assert [r.outcome for r in runs] == ["changes", "changes", "changes"]
    assert len({r.commit for r in runs}) == 1 and runs[0].commits == 1
    pulls = github.pull_requests("acme/shop")
    assert len(pulls) == 1 and len(github.requests_to("POST", "/pulls")) == 1
    assert [r.body["draft"] for r in github.requests_to("POST", "/pulls")] == [True]  # stages were left
    assert pulls[0]["draft"] is False  # marked ready after the last stage
    assert len(github.requests_to("PATCH", "/pulls/1")) == 2
