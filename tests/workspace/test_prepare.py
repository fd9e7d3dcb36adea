"""prepare_workspace end to end on disk: documents, CLAUDE.md links, repeats after crashes, confinement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.settings import ConfigError, Settings
from orchestrator.store import TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace.git import PermanentGitError
from orchestrator.workspace.layout import PathEscape
from orchestrator.workspace.prepare import PreparationError, branch_name, prepare_workspace
from tests.support.git_server import git
from tests.workspace.conftest import TOKEN, files_containing, start_run, task_spec

LINK = re.compile(r"\]\(([^)]+)\)")


def links_of(instructions: Path) -> list[str]:
    return LINK.findall(instructions.read_text())


def test_a_full_preparation(remote: Path, ws_settings: Settings, store: TaskStore) -> None:
    run_id = start_run(store, task_spec())
    prepared = prepare_workspace(store, ws_settings, run_id)
    root = ws_settings.workspace_root / "shop" / "worktrees" / "7"
    assert prepared.path == root and prepared.working_dir == root
    assert prepared.branch == "task-7" and prepared.base_branch == "develop"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=root) == "task-7"
    version_dir = root / ".task" / "7" / "v1"
    assert prepared.task_dir == version_dir
    assert sorted(p.name for p in version_dir.iterdir()) == ["acceptance.md", "design.md", "prompt.md", "task.md"]
    task_md = (version_dir / "task.md").read_text()
    for fragment in ("# Task 7: Add login", "Priority: high", "Dependencies: 3, 4", "## Description",
                     "## Details", "## Test strategy", "### 7.1 Form", "render it"):
        assert fragment in task_md
    assert (version_dir / "prompt.md").read_text() == "Implement the login."
    # Every link in CLAUDE.md resolves from where the agent starts.
    links = links_of(root / "CLAUDE.md")
    assert len(links) == 4
    assert all((prepared.working_dir / link).is_file() for link in links)
    settings_file = json.loads((root / ".claude" / "settings.local.json").read_text())
    assert "Bash" in settings_file["permissions"]["allow"]
    # Our files stay out of git: nothing to commit.
    assert git("status", "--porcelain", cwd=root) == ""
    assert files_containing(ws_settings.workspace_root, TOKEN) == []


def test_links_resolve_from_a_working_directory(remote: Path, ws_settings: Settings, store: TaskStore) -> None:
    run_id = start_run(store, task_spec(working_directory="services/api", repository={
        "url": "https://git.example.test/acme/shop.git", "branch": "main"}))
    prepared = prepare_workspace(store, ws_settings, run_id)
    assert prepared.working_dir == ws_settings.workspace_root / "shop" / "worktrees" / "7" / "services" / "api"
    links = links_of(prepared.path / "CLAUDE.md")
    assert links and all(link.startswith("../../.task/7/v1/") for link in links)
    assert all((prepared.working_dir / link).is_file() for link in links)
    assert "`services/api`" in (prepared.path / "CLAUDE.md").read_text()


def test_a_missing_working_directory_in_the_repository_is_permanent(remote: Path, ws_settings: Settings,
                                                                   store: TaskStore) -> None:
    run_id = start_run(store, task_spec(working_directory="no/such/dir"))
    with pytest.raises(PermanentGitError):
        prepare_workspace(store, ws_settings, run_id)


def test_without_repository_only_task_files(ws_settings: Settings, store: TaskStore) -> None:
    run_id = start_run(store, task_spec(repository=None, working_directory="work"))
    prepared = prepare_workspace(store, ws_settings, run_id)
    assert prepared.branch is None and prepared.commit is None
    assert not (prepared.path / ".git").exists()
    assert prepared.working_dir.is_dir()
    assert all((prepared.working_dir / link).is_file() for link in links_of(prepared.path / "CLAUDE.md"))
    assert "branch" not in (prepared.path / "CLAUDE.md").read_text().split("## ")[0].lower()


def test_new_context_version_replaces_the_old_files(ws_settings: Settings, store: TaskStore) -> None:
    spec = task_spec(repository=None)
    run_id = start_run(store, spec)
    prepare_workspace(store, ws_settings, run_id)
    store.add_context("shop", 7, {"content": "Also support SSO.", "added_by": "pm"})
    store.transition("shop", 7, "Pending", reason="context", actor="test")
    run2 = start_run(store, spec, version=2, create=False)
    prepared = prepare_workspace(store, ws_settings, run2)
    task_dir = prepared.path / ".task" / "7"
    assert [p.name for p in task_dir.iterdir()] == ["v2"]
    context = (task_dir / "v2" / "context-v2.md").read_text()
    assert "Also support SSO." in context and "added by pm" in context
    assert "context-v2.md" in (prepared.path / "CLAUDE.md").read_text()


def test_repeating_a_half_done_preparation(remote: Path, ws_settings: Settings, store: TaskStore) -> None:
    """Whatever a crash left (git init without remote, temp files, stale versions, locks), a repeat succeeds."""
    root = ws_settings.workspace_root / "shop" / "worktrees" / "7"
    root.mkdir(parents=True)
    git("init", "-q", str(root))  # crashed right after `git init`
    (root / ".orch-tmp-CLAUDE.md.dead").write_text("half")
    stale = root / ".task" / "7" / "v0-stale"
    stale.mkdir(parents=True)
    (root / ".task" / "7" / "v1").mkdir()
    (root / ".task" / "7" / "v1" / ".orch-tmp-task.md.beef").write_text("half")
    (root / ".task" / "7" / "v1" / "removed-doc.md").write_text("from an earlier attempt")
    (root / ".git" / "index.lock").write_text("")
    other = root / ".task" / "8" / "v1" / ".orch-tmp-task.md.cafe"  # another task's: its own preparation's
    other.parent.mkdir(parents=True)
    other.write_text("half")
    run_id = start_run(store, task_spec())
    first = prepare_workspace(store, ws_settings, run_id)
    assert not stale.exists() and not (root / ".orch-tmp-CLAUDE.md.dead").exists()
    # The half-made checkout (a `.git` directory where a worktree's `.git` file belongs) was rebuilt:
    # nothing of it is reused.
    assert list(root.rglob(".orch-tmp-*")) == [] and not other.exists() and (root / ".git").is_file()
    assert not (first.task_dir / "removed-doc.md").exists()
    # A repeat of a finished preparation changes nothing and gives the same answer.
    snapshot = {p: p.read_bytes() for p in (root / ".task").rglob("*") if p.is_file()}
    again = prepare_workspace(store, ws_settings, run_id)
    assert again == first
    assert {p: p.read_bytes() for p in (root / ".task").rglob("*") if p.is_file()} == snapshot


def test_other_tasks_files_survive_in_their_own_worktrees(remote: Path, ws_settings: Settings,
                                                          store: TaskStore) -> None:
    run7 = start_run(store, task_spec(7))
    seven = prepare_workspace(store, ws_settings, run7)
    run8 = start_run(store, task_spec(8))
    prepared = prepare_workspace(store, ws_settings, run8)
    assert prepared.path != seven.path and prepared.branch == "task-8"
    assert (seven.path / ".task" / "7" / "v1" / "task.md").exists()
    assert not (prepared.path / ".task" / "7").exists()  # each agent sees its own task's files only
    assert "task=8" in (prepared.path / "CLAUDE.md").read_text().splitlines()[0]
    assert "task=7" in (seven.path / "CLAUDE.md").read_text().splitlines()[0]


def test_a_tracked_claude_md_is_kept_and_hidden_from_git(git_server, tmp_path: Path, ws_settings: Settings,
                                                        store: TaskStore) -> None:
    git_server.create_repository("acme/shop", tmp_path / "seed", branches={
        "main": {"CLAUDE.md": "Repository rules: run make test.\n"}})
    run_id = start_run(store, task_spec(repository={"url": "https://git.example.test/acme/shop.git",
                                                     "branch": "main"}))
    prepared = prepare_workspace(store, ws_settings, run_id)
    text = (prepared.path / "CLAUDE.md").read_text()
    assert text.startswith("<!-- orchestrator:") and "Repository rules: run make test." in text
    assert git("status", "--porcelain", cwd=prepared.path) == ""
    # A repeat does not stack the repository's text twice.
    prepare_workspace(store, ws_settings, run_id)
    assert (prepared.path / "CLAUDE.md").read_text().count("Repository rules") == 1


@pytest.mark.parametrize("field, value", [
    ("working_directory", "../other"),
    ("working_directory", "/etc"),
    ("working_directory", "a/../../x"),
])
def test_traversal_in_the_spec_is_refused(ws_settings: Settings, store: TaskStore, field: str, value: str) -> None:
    run_id = start_run(store, task_spec(repository=None, **{field: value}))
    with pytest.raises((PreparationError, PathEscape)):
        prepare_workspace(store, ws_settings, run_id)
    assert not (ws_settings.workspace_root.parent / "other").exists()


def test_a_markdown_file_name_that_escapes_is_refused(ws_settings: Settings, store: TaskStore) -> None:
    spec = task_spec(repository=None, markdown_files=[{"filename": "../../evil.md", "content": "x",
                                                       "file_type": "task"}])
    run_id = start_run(store, spec)
    with pytest.raises(ValueError):
        prepare_workspace(store, ws_settings, run_id)
    assert not list(ws_settings.workspace_root.parent.rglob("evil.md"))


def test_planted_symlinks_are_refused(ws_settings: Settings, store: TaskStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = ws_settings.workspace_root / "shop" / "worktrees" / "7"
    root.mkdir(parents=True)
    (root / ".task").symlink_to(outside)  # an earlier agent points our task files elsewhere
    run_id = start_run(store, task_spec(repository=None))
    with pytest.raises(PathEscape):
        prepare_workspace(store, ws_settings, run_id)
    assert list(outside.iterdir()) == []


def test_a_symlinked_service_directory_is_refused(ws_settings: Settings, store: TaskStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ws_settings.workspace_root.mkdir(parents=True)
    (ws_settings.workspace_root / "shop").symlink_to(outside)
    run_id = start_run(store, task_spec(repository=None))
    with pytest.raises(PathEscape):
        prepare_workspace(store, ws_settings, run_id)
    assert list(outside.iterdir()) == []


def test_a_lost_lease_stops_the_writes(ws_settings: Settings, store: TaskStore) -> None:
    run_id = start_run(store, task_spec(repository=None))
    lease = leases.acquire(store, "shop", run_id, 60)
    leases.release(store, "shop", run_id)
    leases.acquire(store, "shop", "someone-else", 60)
    with pytest.raises(leases.LeaseLost):
        prepare_workspace(store, ws_settings, run_id, lease=lease)
    assert not (ws_settings.workspace_root / "shop" / ".task").exists()


@pytest.mark.parametrize("url", ["http://git.example.test/acme/shop.git", "file:///etc",
                                 "https://user:pw@git.example.test/acme/shop.git", "--upload-pack=x"])
def test_unsafe_repository_urls_are_refused(ws_settings: Settings, store: TaskStore, url: str) -> None:
    run_id = start_run(store, task_spec(repository={"url": url, "branch": "main"}))
    with pytest.raises(PreparationError):
        prepare_workspace(store, ws_settings, run_id)
    assert not (ws_settings.workspace_root / "shop" / ".git").exists()


def test_workspace_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="ORCHESTRATOR_GIT_TIMEOUT_SECONDS"):
        Settings.from_env({"ORCHESTRATOR_GIT_TIMEOUT_SECONDS": "300"})
    with pytest.raises(ConfigError, match="ORCHESTRATOR_BRANCH_TEMPLATE"):
        Settings.from_env({"ORCHESTRATOR_BRANCH_TEMPLATE": "fixed-name"})
    with pytest.raises(ConfigError, match="ORCHESTRATOR_BRANCH_TEMPLATE"):
        Settings.from_env({"ORCHESTRATOR_BRANCH_TEMPLATE": "task {task_id}"})
    with pytest.raises(ConfigError, match="ORCHESTRATOR_BRANCH_TEMPLATE"):
        Settings.from_env({"ORCHESTRATOR_BRANCH_TEMPLATE": "task-{id}"})
    settings = Settings.from_env({"ORCHESTRATOR_BRANCH_TEMPLATE": "agents/{service}/{task_id}"})
    assert branch_name(settings, "shop", 7) == "agents/shop/7"


def test_a_claude_md_that_links_to_agents_md_is_followed(git_server, tmp_path: Path, ws_settings: Settings,
                                                        store: TaskStore) -> None:
    seed = tmp_path / "seed"
    git_server.create_repository("acme/shop", seed, branches={"main": {"AGENTS.md": "Use tabs.\n"}})
    (seed / "CLAUDE.md").symlink_to("AGENTS.md")
    git("add", "CLAUDE.md", cwd=seed)
    git("commit", "-qm", "link", cwd=seed)
    git("push", "-q", str(git_server.project_root / "acme" / "shop.git"), "main:main", cwd=seed)
    run_id = start_run(store, task_spec(repository={"url": "https://git.example.test/acme/shop.git",
                                                     "branch": "main"}))
    prepared = prepare_workspace(store, ws_settings, run_id)
    claude = prepared.path / "CLAUDE.md"
    assert not claude.is_symlink() and "Use tabs." in claude.read_text()
    assert (prepared.path / "AGENTS.md").read_text() == "Use tabs.\n"
    assert git("status", "--porcelain", cwd=prepared.path) == ""
    prepare_workspace(store, ws_settings, run_id)
    assert claude.read_text().count("Use tabs.") == 1


def test_a_git_file_pointing_elsewhere_is_never_followed(ws_settings: Settings, store: TaskStore, tmp_path: Path,
                                                         remote: Path) -> None:
    root = ws_settings.workspace_root / "shop" / "worktrees" / "7"
    root.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    git("init", "-q", str(elsewhere))
    (root / ".git").write_text(f"gitdir: {elsewhere / '.git'}\n")
    run_id = start_run(store, task_spec())
    prepared = prepare_workspace(store, ws_settings, run_id)
    assert (root / ".git").read_text() == "gitdir: ../../.clone/.git/worktrees/7\n"  # rebuilt, ours
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=root) == "task-7" == prepared.branch
    assert git("for-each-ref", cwd=elsewhere) == ""  # the other repository was never touched
