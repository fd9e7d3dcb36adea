"""deliver_run in a real Celery worker (with the real finish_run), against git over HTTP and the GitHub emulator."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import workers.app
from orchestrator import dispatch
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from tests.delivery.conftest import TOKEN, agent_ended, prepare_and_run, task_spec
from tests.support.fake_github import FakeGitHub
from tests.support.git_server import GitHttpServer
from tests.support.wait import wait_for
from workers.app import create_celery

PRE_RECEIVE_ONCE = """#!/bin/sh
marker="$(dirname "$0")/refused-once"
[ -e "$marker" ] && exit 0
touch "$marker"
echo "refused: try again" >&2
exit 1
"""


def test_a_worker_delivers_after_a_refused_push_and_finishes_the_task(
        worker_factory: Callable, settings: Settings, store: TaskStore, tmp_path: Path, remote: Path,
        git_server: GitHttpServer, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE_ONCE)
    hook.chmod(0o755)
    env = {**git_server.git_env(), "GITHUB_TOKEN": TOKEN, "ORCHESTRATOR_GITHUB_API_URL": github.url,
           "ORCHESTRATOR_WORKSPACE_ROOT": str(tmp_path / "ws"), "ORCHESTRATOR_GIT_TIMEOUT_SECONDS": "30",
           "ORCHESTRATOR_DELIVERY_BACKOFF_SECONDS": "0.5", "ORCHESTRATOR_DELIVERY_RETRIES": "3"}
    worker = worker_factory(queues=("workspace", "coordination"), env=env)
    cfg = settings.replace(github_token=TOKEN, workspace_root=tmp_path / "ws", git_timeout_seconds=30,
                           github_api_url=github.url)
    app = create_celery(cfg)
    monkeypatch.setattr(workers.app, "app", app)  # this process sends to the tests' Redis
    try:
        run_id = prepare_and_run(store, cfg, task_spec(7, dependencies=[]))
        ws = cfg.workspace_root / "shop" / "worktrees" / "7"
        (ws / "login.py").write_text("def login(): ...\n")
        agent_ended(store, run_id)
        dispatch.send(Step.FINISH_RUN, run_id)

        wait_for(lambda: store.require_task("shop", 7).status in ("Succeeded", "Failed"), timeout=60)
        task = store.require_task("shop", 7)
        assert task.status == "Succeeded", (task.status_reason, worker.log()[-3000:])
        run = store.get_run(run_id)
        assert run.outcome == "changes"
        head = subprocess.run(["git", "rev-parse", "refs/heads/task-7"], cwd=remote, capture_output=True,
                              text=True).stdout.strip()
        assert head == run.commit
        assert len(github.pull_requests()) == 1
        log = worker.log()
        assert "orchestrator.deliver_run" in log and "retry" in log.lower() and "push refused" in log
        assert TOKEN not in log
    finally:
        app.close()
