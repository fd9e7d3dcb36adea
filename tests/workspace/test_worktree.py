"""One clone per service, a worktree per task: fetch sharing, crash recovery, branch safety, exclusive tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace import step as pipeline
from orchestrator.workspace.git import Git
from orchestrator.workspace.prepare import prepare_workspace
from orchestrator.workspace.worktree import BranchInUse, checkout_worktree
from tests.support.git_server import GitHttpServer, git
from tests.support.runs import Sent
from tests.workspace.conftest import REPO_URL, TOKEN, start_run, task_spec


@pytest.fixture
def sent() -> Any:
    """Steps queued by the code under test, recorded instead of queued."""
    return Sent().install().flat


def fetches(server: GitHttpServer) -> int:
    return sum(1 for method, path, _ in server.requests if method == "POST" and path.endswith("git-upload-pack"))


def test_a_burst_of_preparations_fetches_the_clone_once(remote: Path, git_server: GitHttpServer,
                                                        ws_settings: Settings, store: TaskStore) -> None:
    prepared = [prepare_workspace(store, ws_settings, start_run(store, task_spec(1)))]
    after_first = len(git_server.requests)
    assert fetches(git_server) >= 1
    prepared += [prepare_workspace(store, ws_settings, start_run(store, task_spec(n))) for n in range(2, 6)]
    assert len(git_server.requests) == after_first  # one fetch for the burst: every worktree shares the clone
    assert len({p.path for p in prepared}) == 5 and {p.branch for p in prepared} == {f"task-{n}" for n in range(1, 6)}
    clone = ws_settings.workspace_root / "shop" / ".clone"
    assert sorted(p.name for p in (clone / ".git" / "worktrees").iterdir()) == ["1", "2", "3", "4", "5"]
    assert not list(clone.glob("*.md"))  # the clone itself checks nothing out


def test_a_crashed_runs_worktree_is_rebuilt_clean_and_no_other_task_sees_it(remote: Path, ws_settings: Settings,
                                                                           store: TaskStore) -> None:
    first = prepare_workspace(store, ws_settings, start_run(store, task_spec(7)))
    tree, admin = first.path, ws_settings.workspace_root / "shop" / ".clone" / ".git" / "worktrees" / "7"
    # The agent committed once, left edits, then the worker died in the middle of the next preparation:
    # the worktree's metadata half gone, a lock left behind.
    (tree / "work.py").write_text("committed\n")
    git("add", "work.py", cwd=tree)
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "work", cwd=tree)
    (tree / "README.md").write_text("dirty\n")
    (tree / "scratch.txt").write_text("untracked\n")
    (admin / "index.lock").write_text("")
    (admin / "HEAD").unlink()
    other = prepare_workspace(store, ws_settings, start_run(store, task_spec(8)))
    assert not (other.path / "work.py").exists() and not (other.path / "scratch.txt").exists()

    run = store.create_run("shop", 7, version=1, attempt=2)
    store.update_task("shop", 7, current_run=run.run_id)
    again = prepare_workspace(store, ws_settings, run.run_id)
    assert again.path == tree and again.branch == "task-7"
    assert (tree / "work.py").read_text() == "committed\n"  # the branch's committed work is kept
    assert (tree / "README.md").read_text() == "# shop\n" and not (tree / "scratch.txt").exists()
    assert git("status", "--porcelain", cwd=tree) == ""
    assert (tree / ".git").read_text() == "gitdir: ../../.clone/.git/worktrees/7\n"


def test_one_branch_is_never_checked_out_in_two_worktrees(remote: Path, ws_settings: Settings, tmp_path: Path) -> None:
    from contextlib import nullcontext
    root = tmp_path / "ws" / "shop"
    clone = Git(root / ".clone", token=TOKEN, timeout=30, secrets=(TOKEN,))

    def tree(n: int) -> Git:
        return Git(root / "worktrees" / str(n), token=TOKEN, timeout=30, secrets=(TOKEN,), clone=clone.directory)

    common = dict(url=REPO_URL, base_branch="main", branch="shared", lock=nullcontext)
    checkout_worktree(clone, tree(1), **common)
    with pytest.raises(BranchInUse, match="another task"):
        checkout_worktree(clone, tree(2), **common, is_busy=lambda path: True)
    # The other task's run is over: its worktree goes (its commits stay on the branch) and this one takes it.
    result = checkout_worktree(clone, tree(2), **common, is_busy=lambda path: False)
    assert result.branch == "shared" and not (root / "worktrees" / "1").exists()


def test_an_exclusive_task_never_overlaps_another_run_of_its_service(remote: Path, ws_settings: Settings,
                                                                     store: TaskStore, sent: Any) -> None:
    alone = start_run(store, task_spec(7, exclusive=True))
    assert pipeline.prepare_for_run(store, ws_settings, alone).action == "launched"
    assert leases.holder(store, "shop") == alone  # the whole service, for its whole run
    other = start_run(store, task_spec(8))
    result = pipeline.prepare_for_run(store, ws_settings, other)
    assert result.action == "retry" and alone in result.message
    leases.release(store, "shop", alone)  # run 7 ended
    assert leases.holder(store, "shop") is None and leases.holder(store, "shop", 7) is None
    assert pipeline.prepare_for_run(store, ws_settings, other).action == "launched"
    # Now run 8 holds its worktree: an exclusive task waits for it, and does not keep the service meanwhile.
    late = start_run(store, task_spec(9, exclusive=True))
    result = pipeline.prepare_for_run(store, ws_settings, late)
    assert result.action == "retry" and other in result.message
    assert leases.holder(store, "shop") is None
    leases.release(store, "shop", other)
    assert pipeline.prepare_for_run(store, ws_settings, late).action == "launched"


def test_non_exclusive_runs_share_the_service(remote: Path, ws_settings: Settings, store: TaskStore,
                                              sent: Any) -> None:
    runs = [start_run(store, task_spec(n)) for n in (1, 2, 3)]
    assert [pipeline.prepare_for_run(store, ws_settings, r).action for r in runs] == ["launched"] * 3
    assert [leases.holder(store, "shop", n) for n in (1, 2, 3)] == runs  # each holds its own worktree
    assert leases.holder(store, "shop") is None  # nobody holds the service


def test_a_pipeline_stage_can_be_exclusive(ws_settings: Settings, store: TaskStore) -> None:
    from orchestrator.coordination.stages import parse_pipelines
    pipelines = parse_pipelines('{"migrate": [{"name": "plan", "agent": "claude"},'
                                ' {"name": "apply", "agent": "claude", "exclusive": true}]}')
    cfg = ws_settings.replace(pipelines=pipelines)
    store.create_task(service="shop", task_id=3, agent="claude", spec=task_spec(3, pipeline="migrate"))
    task = store.require_task("shop", 3)
    assert not leases.is_exclusive(cfg, task, "plan") and leases.is_exclusive(cfg, task, "apply")
    with pytest.raises(ValueError, match="exclusive must be true or false"):
        parse_pipelines('{"p": [{"name": "a", "agent": "claude", "exclusive": "yes"}]}')


def test_an_agent_pointing_the_clones_head_at_another_tasks_branch_changes_nothing(
        remote: Path, ws_settings: Settings, store: TaskStore) -> None:
    seven = prepare_workspace(store, ws_settings, start_run(store, task_spec(7)))
    # Through the shared .git, task 7's agent points the clone's HEAD at task 8's branch-to-be.
    git("symbolic-ref", "HEAD", "refs/heads/task-8", cwd=seven.path.parent.parent / ".clone")
    eight = prepare_workspace(store, ws_settings, start_run(store, task_spec(8)))
    assert eight.branch == "task-8" and (ws_settings.workspace_root / "shop" / ".clone" / ".git").is_dir()
    assert seven.path.is_dir() and git("rev-parse", "--abbrev-ref", "HEAD", cwd=eight.path) == "task-8"
