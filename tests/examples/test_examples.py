"""The examples: the repository fixture and the agent that commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.workspace.documents import Document, render_instructions, render_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def make_repo(path: Path, *extra: str) -> Path:
    out = subprocess.run([sys.executable, str(EXAMPLES / "make_repo.py"), str(path), *extra], capture_output=True,
                         text=True, check=True)
    return Path(out.stdout.strip())


def agent(cwd: Path, run_id: str = "demo-1-v1-a1") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / "commit_agent.py")], cwd=cwd, capture_output=True,
                          text=True, env={"ORCHESTRATOR_RUN_ID": run_id, "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
                          timeout=60)


def test_make_repo_is_deterministic_and_refuses_a_used_directory(tmp_path: Path) -> None:
    first = make_repo(tmp_path / "a", "--bare-remote", str(tmp_path / "a.git"))
    second = make_repo(tmp_path / "b")
    assert git(first, "rev-parse", "HEAD") == git(second, "rev-parse", "HEAD")
    assert git(first, "branch", "--show-current") == "main"
    assert git(first, "remote", "get-url", "origin") == str(tmp_path / "a.git")
    again = subprocess.run([sys.executable, str(EXAMPLES / "make_repo.py"), str(first)], capture_output=True, text=True)
    assert again.returncode != 0 and "exists and is not empty" in again.stderr


def test_commit_agent_commits_its_change_on_the_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", "task-1")
    # CLAUDE.md as preparation writes it: an `<!-- orchestrator ... -->` line first, then links to the documents.
    task_md = render_task({"title": "Add a greeting module"}, service="demo", task_id=1, version=1)
    (repo / ".task" / "1" / "v1").mkdir(parents=True)
    (repo / ".task" / "1" / "v1" / "task.md").write_text(task_md)
    (repo / "CLAUDE.md").write_text(render_instructions(
        [(Document("task.md", task_md, "taskmaster"), ".task/1/v1/task.md")], service="demo", task_id=1, version=1,
        title="Add a greeting module", run_id="demo-1-v1-a1", start_dir="", branch="task-1", base_branch="main"))
    (repo / ".git" / "info" / "exclude").write_text("/.task/\n/CLAUDE.md\n")
    result = agent(repo)
    assert result.returncode == 0, result.stderr
    assert "commit agent: read .task/1/v1/task.md" in result.stdout
    assert "committed" in result.stdout and "on task-1" in result.stdout
    assert git(repo, "log", "-1", "--format=%s") == "Add a greeting module"
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "agent-notes/demo-1-v1-a1.md"
    assert git(repo, "rev-parse", "main") != git(repo, "rev-parse", "task-1")


def test_commit_agent_without_a_checkout_or_a_brief(tmp_path: Path) -> None:
    assert agent(tmp_path).returncode == 2
    (tmp_path / "CLAUDE.md").write_text("# Only files\n")
    result = agent(tmp_path)
    assert result.returncode == 0 and "not a git checkout" in result.stdout
    assert (tmp_path / "agent-notes" / "demo-1-v1-a1.md").read_text().startswith("# Only files")
