"""The workspace sweep: which task files go, which stay, and the disk use gauge."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.model import Status, Task
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace.cleanup import DISK_GAUGE, disk_usage, sweep, task_ended
from orchestrator.workspace.prepare import prepare_workspace
from tests.support.git_server import git
from tests.workspace.conftest import start_run, task_spec


def prepared(ws_settings: Settings, store: TaskStore, task_id: int) -> Path:
    """A task without a repository prepared: its checkout (a plain directory under worktrees/)."""
    run_id = start_run(store, task_spec(task_id, repository=None))
    return prepare_workspace(store, ws_settings, run_id).path


def test_sweep_removes_ended_tasks_only(ws_settings: Settings, store: TaskStore) -> None:
    cancelled = prepared(ws_settings, store, 1)
    store.transition("shop", 1, "Cancelled", reason="pm", actor="test")
    old = prepared(ws_settings, store, 2)
    store.transition("shop", 2, "Failed", reason="x", actor="test", now=time.time() - 30 * 86400)
    recent = prepared(ws_settings, store, 3)
    store.transition("shop", 3, "Failed", reason="x", actor="test")
    pr_closed = prepared(ws_settings, store, 4)
    store.transition("shop", 4, "Launching", reason="x", actor="test")
    store.transition("shop", 4, "Succeeded", reason="x", actor="test")
    store.update_task("shop", 4, outputs={"pull_request_closed": True})
    active = prepared(ws_settings, store, 5)
    orphan = ws_settings.workspace_root / "shop" / "worktrees" / "6"
    orphan.mkdir()
    # Active task 5 holds no lease in this test; its run would in production.
    report = sweep(store, ws_settings)
    assert sorted(report.removed) == ["shop/1", "shop/2", "shop/4", "shop/6"]
    assert not cancelled.exists() and not old.exists() and not pr_closed.exists() and not orphan.exists()
    assert recent.exists() and active.exists() and (active / "CLAUDE.md").exists()
    assert report.disk_bytes == disk_usage(ws_settings.workspace_root) > 0
    assert store.gauges()[DISK_GAUGE] == report.disk_bytes
    assert store.gauges()[f"{DISK_GAUGE}:shop"] == report.services["shop"] > 0  # per service


def test_sweep_skips_a_worktree_a_run_holds(ws_settings: Settings, store: TaskStore) -> None:
    files = prepared(ws_settings, store, 1)
    store.transition("shop", 1, "Cancelled", reason="pm", actor="test")
    leases.acquire(store, "shop", "some-run", 60, task_id=1)
    report = sweep(store, ws_settings)
    assert report.busy == ["shop/1"] and files.exists()
    store.release_lease(leases.lease_name("shop", 1), "some-run")
    report = sweep(store, ws_settings)
    assert report.removed == ["shop/1"] and not files.exists()


def test_sweep_removes_an_ended_tasks_git_worktree_and_keeps_its_branch(remote: Path, ws_settings: Settings,
                                                                      store: TaskStore) -> None:
    seven = prepare_workspace(store, ws_settings, start_run(store, task_spec(7))).path
    eight = prepare_workspace(store, ws_settings, start_run(store, task_spec(8))).path
    clone = ws_settings.workspace_root / "shop" / ".clone"
    store.transition("shop", 7, "Cancelled", reason="pm", actor="test")
    report = sweep(store, ws_settings)
    assert report.removed == ["shop/7"]
    assert not seven.exists() and not (clone / ".git" / "worktrees" / "7").exists()
    assert eight.exists() and (clone / ".git" / "worktrees" / "8").is_dir()
    listed = git("worktree", "list", "--porcelain", cwd=clone)
    assert str(eight) in listed and str(seven) not in listed
    assert git("rev-parse", "--verify", "refs/heads/task-7", cwd=clone)  # the committed work stays
    assert store.lease_holder(leases.lease_name("shop")) is None  # the service lock went with the removal


def test_task_ended_rules() -> None:
    now = 1_000_000.0
    day = 86400.0
    assert task_ended(None, now=now, max_age_seconds=day)
    assert task_ended(Task(status=Status.CANCELLED, updated_at=now), now=now, max_age_seconds=day)
    assert not task_ended(Task(status=Status.RUNNING, updated_at=0), now=now, max_age_seconds=day)
    assert not task_ended(Task(status=Status.SUCCEEDED, updated_at=now - 10), now=now, max_age_seconds=day)
    assert task_ended(Task(status=Status.SUCCEEDED, updated_at=now - 2 * day), now=now, max_age_seconds=day)
    assert task_ended(Task(status=Status.SUCCEEDED, updated_at=now, outputs={"pull_request_merged": True}),
                      now=now, max_age_seconds=day)
    assert not task_ended(Task(status=Status.PENDING, updated_at=0, outputs={"pull_request_closed": True}),
                          now=now, max_age_seconds=day)
