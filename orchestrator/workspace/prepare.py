"""Prepare one run's workspace: checkout on the task's branch, task documents, CLAUDE.md, agent settings.

`prepare_workspace` is idempotent and safe to repeat after a crash at any
line: git leaves a usable checkout whatever point it stopped at (we init,
check the remote, fetch, then force the branch), every file is written to a
temporary name and renamed, and what an interrupted attempt or an older
version left behind (temporary files, other version directories of the task)
is removed. The agent's committed work on the task branch is kept; its
uncommitted changes are discarded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import validation
from orchestrator.coordination.outputs import run_output_dir
from orchestrator.delivery.local import check_repository_url, git_for
from orchestrator.model import Run, Task
from orchestrator.settings import Settings
from orchestrator.store import TaskNotFound, TaskStore
from orchestrator.workspace import documents as docs
from orchestrator.workspace import lease as leases
from orchestrator.workspace.files import atomic_write, make_durable, remove_path, remove_temp_files
from orchestrator.workspace.git import Git, PermanentGitError, is_tracked, set_skip_worktree
from orchestrator.workspace.layout import (
    AGENT_SETTINGS_DIR,
    AGENT_SETTINGS_FILE,
    INSTRUCTIONS_FILE,
    TASK_DIR,
    PathEscape,
    ServiceLayout,
    ensure_dir,
    relative_link,
    service_layout,
    version_dir_name,
)
from orchestrator.workspace.worktree import checkout_worktree

log = logging.getLogger("orchestrator.workspace.prepare")

# .task/<id>/runs/<run id>/: each run's outputs (ORCHESTRATOR_OUTPUT_DIR), kept for the runs after it.
RUNS_DIR = "runs"

# Files we write at the service root that a repository might also track.
LOCAL_FILES: tuple[str, ...] = (INSTRUCTIONS_FILE, f"{AGENT_SETTINGS_DIR}/{AGENT_SETTINGS_FILE}")
# What `git status` and `git add` must never see (kept in .git/info/exclude).
EXCLUDES: tuple[str, ...] = (f"/{TASK_DIR}/", f"/{INSTRUCTIONS_FILE}", f"/{AGENT_SETTINGS_DIR}/{AGENT_SETTINGS_FILE}")


class PreparationError(Exception):
    """The workspace cannot be prepared; `transient` says whether a later try may succeed."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class PreparedWorkspace:
    """What a run finds on the shared volume."""

    run_id: str
    service: str
    task_id: int
    version: int
    path: Path  # the task's checkout (its worktree, `<service>/worktrees/<task id>`)
    working_dir: Path  # where the agent starts (the service directory or inside it)
    working_directory: str  # the same, relative to `path` ("" for the service directory)
    task_dir: Path  # .task/<id>/v<version>
    documents: tuple[str, ...]  # paths relative to `path`
    branch: str | None
    base_branch: str | None
    commit: str | None
    repository: str | None


def branch_name(settings: Settings, service: str, task_id: int) -> str:
    """The task's branch from ORCHESTRATOR_BRANCH_TEMPLATE."""
    name = settings.branch_template.format(task_id=task_id, service=service)
    try:
        return validation.git_ref(name)
    except ValueError as exc:
        raise PreparationError(f"ORCHESTRATOR_BRANCH_TEMPLATE gives an invalid branch: {exc}") from None


def _repository(spec: dict[str, Any]) -> tuple[str, str] | None:
    repo = spec.get("repository")
    if not repo:
        return None
    url = repo.get("url") if isinstance(repo, dict) else None
    if not isinstance(url, str) or not url:
        raise PreparationError("the task's repository has no URL")
    if url.startswith("-") or any(ord(c) < 33 or c == "\x7f" for c in url):
        raise PreparationError("the task's repository URL contains forbidden characters")
    base = repo.get("branch") or "main"
    try:
        validation.git_ref(base, what="base branch")
    except ValueError as exc:
        raise PreparationError(str(exc)) from None
    return url, base


def _check_url(settings: Settings, url: str) -> None:
    """Validate the URL again (defence in depth): https or git@ form, no credentials, an allowed host."""
    try:
        check_repository_url(url, settings)  # or a local repository, when ORCHESTRATOR_ALLOW_LOCAL_REPOS
    except ValueError as exc:
        raise PreparationError(str(exc)) from None


def _clean_leftovers(layout: ServiceLayout, task_id: int) -> None:
    """Remove temporary files of interrupted writes where this preparation writes (never the repository's files).

    Only this task's directory under `.task`: walking every task's directory on
    every preparation costs more as a service's tasks add up, and another task's
    leftovers go when that task is prepared again or its files are swept.
    """
    for directory in (layout.task_dir(task_id), layout.path / AGENT_SETTINGS_DIR, layout.git_dir / "info"):
        if directory.exists():
            layout.check(directory)
            remove_temp_files(directory)
    for entry in layout.path.iterdir():
        if entry.name.startswith(".orch-tmp-"):
            remove_path(entry)


def _write_documents(
    layout: ServiceLayout,
    task_id: int,
    version: int,
    documents: Sequence[docs.Document],
    written: list[Path] | None = None,
) -> Path:
    """Write the version directory and drop what older versions or earlier attempts left.

    With `written`, the files are not flushed here but appended to it (see `prepare_workspace`).
    """
    task_dir = ensure_dir(layout, layout.task_dir(task_id))
    version_dir = ensure_dir(layout, layout.version_dir(task_id, version))
    wanted = {doc.filename for doc in documents}
    for doc in documents:
        path = layout.check(layout.document(task_id, version, doc.filename), what="document")
        atomic_write(path, doc.content, durable=written is None)
        if written is not None:
            written.append(path)
    for entry in version_dir.iterdir():
        if entry.name not in wanted:
            remove_path(entry)
    current = version_dir_name(version)
    for entry in task_dir.iterdir():
        # runs/ holds every earlier run's outputs and hand-off, which later stages read.
        if entry.name not in (current, RUNS_DIR):
            remove_path(entry)  # an older (or abandoned newer) version would mislead the agent
    return version_dir


def _write_local_file(
    layout: ServiceLayout,
    git: Git | None,
    relpath: str,
    content: str,
    *,
    keep_tracked: bool,
    written: list[Path] | None = None,
) -> None:
    """Write one of our files at the service root; a tracked file of the same name is hidden from git.

    With `keep_tracked`, the repository's own version (CLAUDE.md pointing at
    AGENTS.md through a symbolic link, say) follows our text.
    """
    path = layout.path / relpath
    layout.check(path.parent, what=relpath)
    tracked = git is not None and is_tracked(git, relpath)
    original = ""
    if keep_tracked and path.is_symlink():
        target = path.resolve()
        if target.is_relative_to(layout.path.resolve()) and target.is_file():
            original = target.read_text(errors="replace")
    elif keep_tracked and tracked:
        original = git.run("show", f"HEAD:{relpath}", check=False).stdout  # type: ignore[union-attr]
    if original.strip():
        content = content + "\n---\n\n# The repository's own instructions\n\n" + original
    atomic_write(path, content, durable=written is None)  # replaces a link rather than writing through it
    if written is not None:
        written.append(path)
    if tracked:
        set_skip_worktree(git, relpath, True)  # type: ignore[arg-type]


Loaded = tuple[Run, Task, list[dict[str, Any]]]


def prepare_workspace(
    store: TaskStore,
    settings: Settings,
    run_id: str,
    *,
    lease: leases.Lease | None = None,
    loaded: Loaded | None = None,
    final_check: bool = True,
    clone_lock: Callable[[], AbstractContextManager[object]] | None = None,
) -> PreparedWorkspace:
    """Make the run's workspace ready; raise PreparationError, GitError, PathEscape or LeaseLost.

    `loaded` is (run, task, contexts) as `store.get_run_with_task(run_id, contexts=True)`
    returned them, when the caller has just read them: a task's spec never
    changes, and a context added later belongs to a later version than this run's.
    `lease` is the task's worktree lease; `clone_lock` guards the operations on
    the service's shared clone (the step passes the service lock; none by default).
    With `final_check=False` the lease is checked before each write but not
    after the last: the caller checks it in the same atomic step as recording
    the workspace as ready (`store.transition(lease=...)`).
    """
    if loaded is None:
        run, task, contexts = store.get_run_with_task(run_id, contexts=True)
        if run is None:
            raise PreparationError(f"no run {run_id}")
        if task is None:
            raise TaskNotFound(f"no task {run.service}/{run.task_id}")
    else:
        run, task, contexts = loaded
    service, task_id, version = run.service, run.task_id, run.version
    spec: dict[str, Any] = task.spec
    try:
        service_dir = service_layout(settings.workspace_root, service)
        layout = service_dir.checkout(task_id)  # the task's worktree: its files and its agent's checkout
        working_directory = validation.relative_path(spec.get("working_directory") or "")
    except PathEscape:
        raise
    except ValueError as exc:
        raise PreparationError(str(exc)) from None
    settings.workspace_root.mkdir(parents=True, exist_ok=True)
    ensure_dir(service_dir, service_dir.worktrees)
    ensure_dir(layout, layout.path)
    _clean_leftovers(layout, task_id)

    repository = _repository(spec)
    git: Git | None = None
    branch = base_branch = commit = None
    if repository:
        url, base_branch = repository
        _check_url(settings, url)
        branch = branch_name(settings, service, task_id)
        options = dict(
            token=settings.github_token, timeout=settings.git_timeout_seconds, secrets=tuple(settings.secret_values())
        )
        clone = git_for(url, service_dir.clone, **options)
        git = git_for(url, layout.path, clone=service_dir.clone, **options)
        for path in (service_dir.clone, service_dir.clone / ".git", layout.path):
            service_dir.check(path, what="the service's clone")
        if lease:
            leases.check(store, lease)

        def busy(path: Path) -> bool:  # another task's worktree on our branch: is a run using it?
            return not path.name.isdigit() or leases.holder(store, service, int(path.name)) is not None

        result = checkout_worktree(
            clone,
            git,
            url=url,
            base_branch=base_branch,
            branch=branch,
            lock=clone_lock or nullcontext,
            is_busy=busy,
            local_files=LOCAL_FILES,
            excludes=EXCLUDES,
        )
        commit = result.commit
        log.info(
            "workspace %s/%s: %s on %s at %s (from %s)", service, task_id, url, branch, commit[:12], result.started_from
        )

    working_dir = layout.working_dir(working_directory)
    if repository and not working_dir.is_dir():
        raise PermanentGitError(f"working directory {working_directory!r} does not exist on branch {branch}")
    ensure_dir(layout, working_dir)

    if lease:
        leases.check(store, lease)
    documents = docs.task_documents(spec, contexts, service=service, task_id=task_id, version=version)
    # Written without a flush each, then flushed together (make_durable below)
    # before this returns: the caller records the workspace as ready only
    # afterwards, no agent reads these files before that, and a preparation
    # interrupted earlier (even by a power loss) is done again, rewriting
    # whatever differs.
    written: list[Path] = []
    version_dir = _write_documents(layout, task_id, version, documents, written)
    links = [(doc, relative_link(version_dir / doc.filename, working_dir)) for doc in documents]
    instructions = docs.render_instructions(
        links,
        service=service,
        task_id=task_id,
        version=version,
        title=str(spec.get("title") or f"Task {task_id}"),
        run_id=run_id,
        start_dir=working_directory,
        branch=branch,
        base_branch=base_branch,
        output_dir=relative_link(layout.path / run_output_dir(service, task_id, run_id), working_dir),
    )
    ensure_dir(layout, layout.path / AGENT_SETTINGS_DIR)
    _write_local_file(layout, git, INSTRUCTIONS_FILE, instructions, keep_tracked=True, written=written)
    _write_local_file(
        layout,
        git,
        f"{AGENT_SETTINGS_DIR}/{AGENT_SETTINGS_FILE}",
        docs.render_agent_settings(settings.agent_allowed_tools),
        keep_tracked=False,
        written=written,
    )
    # The files, and the entries of every directory on their way from the root
    # (some were just created), last before the run is recorded as ready.
    make_durable(
        written,
        [
            settings.workspace_root,
            service_dir.path,
            service_dir.worktrees,
            layout.path,
            layout.tasks_dir,
            layout.task_dir(task_id),
            working_dir,
        ],
    )
    if lease and final_check:
        leases.check(store, lease)
    return PreparedWorkspace(
        run_id=run_id,
        service=service,
        task_id=task_id,
        version=version,
        path=layout.path,
        working_dir=working_dir,
        working_directory=working_directory,
        task_dir=version_dir,
        documents=tuple(relative_link(version_dir / d.filename, layout.path) for d in documents),
        branch=branch,
        base_branch=base_branch,
        commit=commit,
        repository=repository[0] if repository else None,
    )


__all__ = ["PreparedWorkspace", "PreparationError", "PathEscape", "prepare_workspace", "branch_name"]
