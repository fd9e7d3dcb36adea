"""Local repositories (ORCHESTRATOR_ALLOW_LOCAL_REPOS): cloned by preparation, the branch pushed back, no PR."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.coordination import outcome
from orchestrator.delivery.local import check_repository_url, local_path
from orchestrator.delivery.step import deliver_run
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.workspace.step import prepare_for_run
from tests.delivery.conftest import agent_ended, prepare_and_run, start_run, task_spec
from tests.support.fake_github import FakeGitHub
from tests.support.git_server import git


@pytest.fixture
def local_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "projects" / "shop"
    repo.mkdir(parents=True)
    git("init", "--quiet", "-b", "main", str(repo))
    (repo / "README.md").write_text("# shop\n")
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "first", cwd=repo)
    return repo


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_a_local_repository_gets_the_branch_pushed_back_and_no_pull_request(
        store: TaskStore, dl_settings: Settings, local_repo: Path, github: FakeGitHub, sent: list, form: str) -> None:
    cfg = dl_settings.replace(allow_local_repos=True)
    url = str(local_repo) if form == "path" else f"file://{local_repo}"
    spec = task_spec(7, dependencies=[], repository={"url": url, "branch": "main"})
    run_id = prepare_and_run(store, cfg, spec)
    ws = cfg.workspace_root / "shop" / "worktrees" / "7"
    assert (ws / "README.md").read_text() == "# shop\n"
    (ws / "login.py").write_text("def login(): ...\n")
    agent_ended(store, run_id)
    assert outcome.finish(store, cfg, run_id) == "delivering"
    assert deliver_run(store, cfg, run_id).action == "delivered"
    assert outcome.finish(store, cfg, run_id) == "Succeeded"
    run = store.get_run(run_id)
    assert run.outcome == "changes" and run.branch == "task-7"
    assert git("rev-parse", "refs/heads/task-7", cwd=local_repo) == run.commit
    assert git("branch", "--show-current", cwd=local_repo) == "main"  # the repository's own checkout is untouched
    assert github.requests == [] and not run.pull_request_url
    assert store.require_task("shop", 7).status_reason == f"run {run_id} succeeded: 1 commit(s) on task-7"


def test_local_repositories_are_refused_unless_allowed(
        store: TaskStore, dl_settings: Settings, local_repo: Path, sent: list) -> None:
    for url in (str(local_repo), f"file://{local_repo}"):
        with pytest.raises(ValueError, match="ORCHESTRATOR_ALLOW_LOCAL_REPOS"):
            check_repository_url(url, dl_settings)
    allowed = dl_settings.replace(allow_local_repos=True)
    assert check_repository_url(str(local_repo), allowed) == str(local_repo)
    for bad in ("relative/path", f"file://otherhost{local_repo}", f"{local_repo}/../shop", "/nonexistent/repo",
                "file:///tmp"):
        with pytest.raises(ValueError):
            check_repository_url(bad, allowed) if not bad.startswith("relative") else local_path(bad)
    # Other protocols keep their rules with the setting on.
    for url in ("http://github.com/acme/shop.git", "ext::sh -c touch% /tmp/x", "git://github.com/acme/shop.git"):
        with pytest.raises(ValueError):
            check_repository_url(url, allowed)
    # Preparation refuses it too when not allowed.
    run_id = start_run(store, task_spec(7, dependencies=[], repository={"url": str(local_repo), "branch": "main"}))
    result = prepare_for_run(store, dl_settings, run_id)
    assert result.action == "failed" and "ORCHESTRATOR_ALLOW_LOCAL_REPOS" in result.message


def test_the_api_accepts_a_local_repository_only_when_allowed(dl_settings: Settings, local_repo: Path) -> None:
    from api.schemas import TaskSubmissionSchema

    body = {"id": 1, "title": "t", "service_name": "shop", "agent_name": "claude",
            "markdown_files": [{"filename": "task.md", "content": "x", "file_type": "task"}],
            "repository": {"url": str(local_repo), "branch": "main"}}
    refused = TaskSubmissionSchema(settings=dl_settings).validate(body)
    assert "ORCHESTRATOR_ALLOW_LOCAL_REPOS" in str(refused["repository"]["url"])
    assert TaskSubmissionSchema(settings=dl_settings.replace(allow_local_repos=True)).validate(body) == {}


def test_orchestrator_up_allows_local_repositories_for_its_local_runner(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import stack

    monkeypatch.delenv("ORCHESTRATOR_ALLOW_LOCAL_REPOS", raising=False)
    env = stack.child_env(settings, "redis://127.0.0.1:1/0", "tok", "127.0.0.1:1")
    assert env["ORCHESTRATOR_ALLOW_LOCAL_REPOS"] == "true"
    assert Settings.from_env(env).allow_local_repos is True
    monkeypatch.setenv("ORCHESTRATOR_ALLOW_LOCAL_REPOS", "false")  # an explicit choice is kept
    assert stack.child_env(settings, "redis://127.0.0.1:1/0", "tok", "127.0.0.1:1")[
        "ORCHESTRATOR_ALLOW_LOCAL_REPOS"] == "false"
    monkeypatch.delenv("ORCHESTRATOR_ALLOW_LOCAL_REPOS")
    cluster = stack.child_env(settings.replace(runner="kubernetes"), "redis://127.0.0.1:1/0", "tok", "127.0.0.1:1")
    assert "ORCHESTRATOR_ALLOW_LOCAL_REPOS" not in cluster
