"""Where things live on the shared volume, and the guard that keeps every derived path inside it.

    <workspace root>/
      <service>/
        .clone/                       the service's one clone (its .git; nothing checked out)
        worktrees/<task id>/          the task's checkout: a git worktree on the task's branch
                                      (or a plain directory when the task has no repository)
          CLAUDE.md                     the agent's instructions for the current run
          .claude/settings.local.json   the agent's settings (allowed tools)
          .task/<task id>/v<version>/   the task's documents for one context version

Every path built from input (service name, task id, file name, working
directory) is validated with `orchestrator.validation`, resolved, and checked to
stay under its root; a symbolic link on the way that leads elsewhere is
refused, because the agent of an earlier run could have planted one.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath

from orchestrator import validation

TASK_DIR = ".task"
INSTRUCTIONS_FILE = "CLAUDE.md"
AGENT_SETTINGS_DIR = ".claude"
# settings.local.json rather than settings.json: Claude Code reads both, and the
# local one is meant to stay out of version control, so a repository's own
# committed settings are never overwritten.
AGENT_SETTINGS_FILE = "settings.local.json"
# Marks temporary files of atomic writes; a crash can leave them behind.
TEMP_MARK = ".orch-tmp-"
# Directories directly under the root that are not services.
RESERVED = frozenset({".archive", ".trash"})
# The shared clone and the per-task worktrees inside a service's directory.
CLONE_DIR = ".clone"
WORKTREES_DIR = "worktrees"


class PathEscape(ValueError):
    """A path derived from input would leave its root (traversal or symbolic link)."""


def confine(root: Path, path: Path, *, what: str = "path", real_root: Path | None = None) -> Path:
    """`path` resolved, refused unless it stays under `root` and crosses no symbolic link below it.

    `real_root` is `root` resolved, when the caller knows it already. Works on
    the paths' strings: a preparation checks a dozen paths, and building
    path objects for every part was most of what the checks cost.
    """
    # Normalised as pathlib does (a path object is already).
    root_s = os.fspath(root if isinstance(root, PurePath) else Path(root))
    path_s = os.fspath(path if isinstance(path, PurePath) else Path(path))
    if path_s == root_s:
        parts: list[str] = []
    else:
        prefix = root_s if root_s.endswith(os.sep) else root_s + os.sep
        if not path_s.startswith(prefix):
            raise PathEscape(f"{what} leaves the workspace")
        parts = path_s[len(prefix) :].split(os.sep)
    if any(part in ("..", "") for part in parts):
        raise PathEscape(f"{what} leaves the workspace")
    # No symbolic link below the root, even one pointing inside it: our own
    # directories never contain links, so one found there was planted.
    probe = root_s
    for part in parts:
        probe = os.path.join(probe, part)
        try:
            mode = os.lstat(probe).st_mode
        except (FileNotFoundError, NotADirectoryError):
            break  # nothing exists below a missing component
        if stat.S_ISLNK(mode):
            raise PathEscape(f"{what} goes through a symbolic link")
    # With no link and no '..' below the root, the path resolves to the root's
    # real path joined with the same parts: resolving it again would repeat
    # the walk above, one system call per component, on every check.
    real = os.fspath(real_root) if real_root is not None else os.path.realpath(root_s)
    return Path(os.path.join(real, *parts)) if parts else Path(real)


def version_dir_name(version: int) -> str:
    return f"v{int(version)}"


@dataclass(frozen=True)
class ServiceLayout:
    """The paths of one service's directory."""

    root: Path
    service: str

    @functools.cached_property
    def path(self) -> Path:
        return self.root / self.service

    @property
    def git_dir(self) -> Path:
        return self.path / ".git"

    @property
    def tasks_dir(self) -> Path:
        return self.path / TASK_DIR

    @property
    def instructions(self) -> Path:
        return self.path / INSTRUCTIONS_FILE

    @property
    def agent_settings(self) -> Path:
        return self.path / AGENT_SETTINGS_DIR / AGENT_SETTINGS_FILE

    def task_dir(self, task_id: int) -> Path:
        return self.tasks_dir / str(_task_id(task_id))

    def version_dir(self, task_id: int, version: int) -> Path:
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise PathEscape("context version must be an integer >= 1")
        return self.task_dir(task_id) / version_dir_name(version)

    def document(self, task_id: int, version: int, filename: str) -> Path:
        """A task document's path; the name must be a plain markdown file name."""
        return self.version_dir(task_id, version) / validation.markdown_filename(filename)

    @property
    def clone(self) -> Path:
        """The service's shared clone (its `.git` holds every worktree's metadata)."""
        return self.root / self.service / CLONE_DIR

    @property
    def worktrees(self) -> Path:
        return self.root / self.service / WORKTREES_DIR

    def checkout(self, task_id: int) -> CheckoutLayout:
        """The layout of one task's checkout (its worktree): the same names, rooted in the worktree."""
        return CheckoutLayout(self.root, self.service, _task_id(task_id))

    def working_dir(self, working_directory: str) -> Path:
        """The agent's start directory inside the service directory."""
        rel = validation.relative_path(working_directory or "")
        return self.path / rel if rel else self.path

    @functools.cached_property
    def _real_root(self) -> Path:
        # The configured root is the operator's, never an agent's to change: resolved once per layout.
        return Path(os.path.realpath(self.root))

    def check(self, path: Path, *, what: str = "path") -> Path:
        """Refuse `path` unless it stays inside this service's directory."""
        if os.path.islink(self.path):  # all `confine(root, service directory)` would find: its name is validated
            raise PathEscape("service directory goes through a symbolic link")
        return confine(self.path, path, what=what, real_root=self._real_root / self._relative)

    @property
    def _relative(self) -> str:
        return self.service


@dataclass(frozen=True)
class CheckoutLayout(ServiceLayout):
    """One task's checkout, `<service>/worktrees/<task id>/`: where its agent works and its files live."""

    task: int = 0

    @functools.cached_property
    def path(self) -> Path:
        return self.root / self.service / WORKTREES_DIR / str(self.task)

    @property
    def _relative(self) -> str:
        return os.path.join(self.service, WORKTREES_DIR, str(self.task))

    def check(self, path: Path, *, what: str = "path") -> Path:
        for part in (self.root / self.service, self.root / self.service / WORKTREES_DIR):
            if os.path.islink(part):
                raise PathEscape("the task's checkout goes through a symbolic link")
        return super().check(path, what=what)


def _task_id(task_id: int) -> int:
    if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 1:
        raise PathEscape("task id must be an integer >= 1")
    return task_id


def service_layout(root: Path, service: str) -> ServiceLayout:
    """The layout of one service, after validating its name and confining its directory."""
    name = validation.service_name(service)
    if name in RESERVED:
        raise PathEscape("service name is reserved")
    layout = ServiceLayout(Path(root), name)
    confine(Path(root), layout.path, what="service directory")
    return layout


def checkout_dir(root: Path, service: str, task_id: int) -> Path:
    """Where a task's checkout (its worktree) lives: `<root>/<service>/worktrees/<task id>`."""
    return service_layout(root, service).checkout(int(task_id)).path


def relative_link(target: Path, start: Path) -> str:
    """`target` as a POSIX path relative to `start` (both inside one service directory)."""
    return Path(os.path.relpath(target, start)).as_posix()


def ensure_dir(layout: ServiceLayout, path: Path) -> Path:
    """Create `path` (and parents) inside the service directory, refusing links that escape."""
    layout.check(path)
    path.mkdir(parents=True, exist_ok=True)
    return layout.check(path)
