"""The issue's status comment follows every status change, through the real steps (admission, preparation,
the watcher's observation, delivery, finish) and the REST operations, against the GitHub emulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import operations, runs
from orchestrator.coordination import admission, outcome
from orchestrator.delivery.step import deliver_run
from orchestrator.github import reporter
from orchestrator.runners.base import RUNNING, RunObservation
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.workspace.step import GIT_RETRIES, prepare_for_run
from tests.delivery.conftest import InlineReports, agent_ended, task_spec
from tests.support.fake_github import FakeGitHub
from tests.support.git_server import GitHttpServer, git

SERVICE = "shop"
ORIGIN = {"github": {"repo": "acme/shop", "issue": 7, "url": "https://github.com/acme/shop/issues/7"}}


def submit(store: TaskStore, spec: dict[str, Any]) -> None:
    operations.submit_task(store, spec, actor="github:alice", origin=ORIGIN)
    reporter.notify_status(SERVICE, int(spec["id"]), store=store)  # as the issue handler does


def test_every_status_change_edits_the_comment_up_to_the_delivered_end(
    store: TaskStore,
    dl_settings: Settings,
    remote: Path,
    git_server: GitHttpServer,
    github: FakeGitHub,
    reports: InlineReports,
) -> None:
    spec = task_spec(7, title="Add login form", dependencies=[])
    submit(store, spec)
    assert "Pending" in reports.headline()

    assert admission.admit(store, dl_settings, SERVICE, 7) == "Preparing"
    assert [c.split("\n")[3] for c in reports.comments[1:]] == ["**⏳ Queued**", "**🛠️ Preparing the workspace**"]
    run_id = store.require_task(SERVICE, 7).current_run

    assert prepare_for_run(store, dl_settings, run_id).action == "launched"
    assert reports.headline() == "**🚀 Launching**"

    store.update_run(run_id, job_name="orch-shop-7-v1-a1")
    runs.apply_observation(store, RunObservation(run_id, RUNNING, started_at=time.time() - 125))
    assert reports.headline() == "**🏃 Running (Job `orch-shop-7-v1-a1`)**"

    ws = dl_settings.workspace_root / SERVICE / "worktrees" / "7"
    (ws / "login.py").write_text("def login(): ...\n")
    out = ws / ".task/7/runs" / run_id
    out.mkdir(parents=True)
    (out / "outputs.json").write_text(json.dumps({"summary": "Added the login view."}))
    agent_ended(store, run_id)
    store.update_run(run_id, usage={"num_turns": 14, "cost_usd": 0.42})
    assert outcome.finish(store, dl_settings, run_id) == "delivering"
    assert deliver_run(store, dl_settings, run_id).action == "delivered"
    assert outcome.finish(store, dl_settings, run_id) == "Succeeded"

    end = reports.comments[-1]
    assert reports.headline() == "**✅ Succeeded**"
    assert "Outcome: **changes**: 1 commit on branch `task-7` (1 file, +1 −0)." in end
    assert "Pull request: https://github.com/acme/shop/pull/1" in end
    assert "Figures: 2m" in end and "14 turns · $0.42" in end
    assert len(github.comments) == 1  # one comment, edited

    # Over REST: context, cancel and retry each show at once.
    operations.add_context(
        store, SERVICE, 7, {"filename": "more.md", "content": "Also log out.", "file_type": "context"}, actor="pm"
    )
    assert reports.headline().startswith("**⏳ Pending") and "context v2 added by pm" in reports.comments[-1]
    operations.cancel_task(store, SERVICE, 7, actor="pm", reason="not now")
    assert reports.headline() == "**🛑 Cancelled**" and "Reason: not now" in reports.comments[-1]
    operations.retry_task(store, SERVICE, 7, actor="pm")
    assert reports.headline().startswith("**⏳ Pending") and "retry requested by pm" in reports.comments[-1]


def test_blocked_shows_its_reason(
    store: TaskStore, dl_settings: Settings, github: FakeGitHub, reports: InlineReports
) -> None:
    submit(store, task_spec(7, dependencies=[99]))
    assert admission.admit(store, dl_settings, SERVICE, 7) == "Blocked"
    assert reports.headline() == "**⏸️ Blocked**"
    assert "Reason: " in reports.comments[-1] and "99" in reports.comments[-1]


def test_a_workspace_failure_reaches_the_comment(
    store: TaskStore, dl_settings: Settings, git_server: GitHttpServer, github: FakeGitHub, reports: InlineReports
) -> None:
    spec = task_spec(
        7, dependencies=[], repository={"url": "https://git.example.test/acme/missing.git", "branch": "main"}
    )
    submit(store, spec)
    admission.admit(store, dl_settings, SERVICE, 7)
    run_id = store.require_task(SERVICE, 7).current_run
    assert prepare_for_run(store, dl_settings, run_id, retries=GIT_RETRIES).action == "failed"
    assert reports.headline() == "**❌ Failed**"
    assert "Reason: workspace preparation failed" in reports.comments[-1]


def test_no_changes_is_said_plainly(
    store: TaskStore,
    dl_settings: Settings,
    remote: Path,
    git_server: GitHttpServer,
    github: FakeGitHub,
    reports: InlineReports,
) -> None:
    submit(store, task_spec(7, dependencies=[]))
    admission.admit(store, dl_settings, SERVICE, 7)
    run_id = store.require_task(SERVICE, 7).current_run
    prepare_for_run(store, dl_settings, run_id)
    agent_ended(store, run_id)
    outcome.finish(store, dl_settings, run_id)
    deliver_run(store, dl_settings, run_id)
    outcome.finish(store, dl_settings, run_id)
    assert "Outcome: **no changes**" in reports.comments[-1] and "Pull request" not in reports.comments[-1]
    assert git("branch", "--list", cwd=dl_settings.workspace_root / SERVICE / "worktrees" / "7")


def test_a_rest_cancel_reports_through_the_apps_own_dispatcher(
        store: TaskStore, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API hands its dispatcher to its app and installs none: the report must go through that one."""
    from api.app import create_app
    from orchestrator import dispatch
    from orchestrator.settings import reset_settings_cache
    from orchestrator.steps import Step
    from tests.delivery.conftest import Recorder
    from tests.support.api import AUTH

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_rest")
    reset_settings_cache()
    store.create_task(service=SERVICE, task_id=7, agent="claude", spec={"id": 7}, origin=ORIGIN)
    recorder = Recorder()
    monkeypatch.setattr(dispatch, "_default", None)
    previous = dispatch.install(None)
    try:
        client = create_app(settings.replace(github_token="ghp_rest"), dispatcher=recorder).test_client()
        answer = client.post(f"/api/v1/pm/tasks/{SERVICE}/7/cancel", json={"reason": "not now"}, headers=AUTH)
        assert answer.status_code == 200, answer.get_json()
    finally:
        dispatch.install(previous)
        reset_settings_cache()
    assert (Step.REPORT_STATUS, (SERVICE, 7)) in recorder.calls
