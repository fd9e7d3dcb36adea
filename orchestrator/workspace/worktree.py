"""A task's checkout as a git worktree of the service's shared clone.

    <service>/.clone/              one clone per service: config, refs, objects, every worktree's metadata
    <service>/worktrees/<task id>/ the task's worktree, on the task's branch

`checkout_worktree` splits the work by what it touches:

- under the service lock (`lock`, held for seconds): the clone's config and
  metadata rebuilt from our template, the fetch (at most once per
  `FETCH_REUSE_SECONDS`: a burst of preparations shares one), and adding or
  rebuilding the worktree's metadata (`git worktree add --no-checkout`);
- outside it, in the run's own worktree (the run holds its task's worktree
  lease): the files checked out, reset and cleaned.

A worktree whose metadata is missing, or whose `.git` is not ours, is
removed and added again: nothing a crashed run or a hostile agent left is
reused. Git refuses one branch in two worktrees: a branch checked out in
another task's worktree is refused with `BranchInUse` (the step retries later,
so two tasks on one branch name run one after the other).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from orchestrator import validation
from orchestrator.workspace.files import atomic_write, remove_path
from orchestrator.workspace.git import (
    CheckoutResult,
    Git,
    PermanentGitError,
    TransientGitError,
    clear_interrupted_state,
    set_excludes,
    set_skip_worktree,
)
from orchestrator.workspace.gitdir import credential_origin, ensure_remote, start_point, write_gitfile

log = logging.getLogger("orchestrator.workspace.worktree")

UNBORN = "orchestrator-unborn"  # what `init.defaultBranch` names: the clone's HEAD, never a real branch
WORKTREES = "worktrees"  # layout.WORKTREES_DIR

# A fetch younger than this is reused by the next preparation of the service.
FETCH_REUSE_SECONDS = 10.0
FETCH_STAMP = ".fetched"  # in the service directory, out of every agent's reach


class BranchInUse(TransientGitError):
    """The task's branch is checked out in another task's worktree."""


def fetch_stamp(clone: Path) -> Path:
    return clone.parent / FETCH_STAMP


def _fetch(clone: Git, *, reuse_seconds: float) -> bool:
    """Fetch unless a fetch finished less than `reuse_seconds` ago; True when it fetched."""
    stamp = fetch_stamp(clone.directory)
    try:
        age = time.time() - stamp.stat().st_mtime
    except FileNotFoundError:
        age = None
    if age is not None and 0 <= age < reuse_seconds:
        return False
    clone.run("fetch", "--prune", "--no-tags", "--no-recurse-submodules", "--quiet", "origin", network=True)
    clone.run("remote", "set-head", "origin", "--auto", network=True, check=False)
    atomic_write(stamp, f"{time.time()}\n")
    return True


def worktrees_on(clone: Git) -> dict[str, Path]:
    """Branch name -> worktree path, for every worktree of the clone that is on a branch."""
    out = clone.run("worktree", "list", "--porcelain", check=False).stdout
    found: dict[str, Path] = {}
    path: Path | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
        elif line.startswith("branch refs/heads/") and path is not None:
            found[line[len("branch refs/heads/") :]] = path
    return found


def _usable(tree: Git) -> bool:
    """The worktree can be reused: its directory, its `.git` file and its metadata are there."""
    gitfile = tree.directory / ".git"
    return (
        tree.directory.is_dir()
        and not tree.directory.is_symlink()
        and gitfile.is_file()
        and not gitfile.is_symlink()
        and tree.git_dir.is_dir()
        and (tree.git_dir / "HEAD").is_file()
    )


def remove_worktree(clone: Git, tree: Path) -> None:
    """Remove a worktree and its metadata (under the service lock); a no-op when neither exists."""
    admin = clone.directory / ".git" / "worktrees" / tree.name
    if tree.exists() or tree.is_symlink():
        remove_path(tree)
    if admin.exists() or admin.is_symlink():
        remove_path(admin)
    if (clone.directory / ".git").is_dir():
        clone.run("worktree", "prune", check=False)


def checkout_worktree(
    clone: Git,
    tree: Git,
    *,
    url: str,
    base_branch: str,
    branch: str,
    lock: Callable[[], AbstractContextManager[object]],
    local_files: Sequence[str] = (),
    excludes: Sequence[str] = (),
    fetch_reuse_seconds: float = FETCH_REUSE_SECONDS,
    is_busy: Callable[[Path], bool] = lambda path: True,
) -> CheckoutResult:
    """Leave `tree` (the task's worktree) clean on `branch`; `lock()` guards the clone's part.

    The branch keeps the work committed on it earlier (here, or pushed to the
    remote); otherwise it starts at the remote's `base_branch`. `is_busy(path)`
    says whether another worktree found on the branch is still used by a run
    (else it is removed, its committed work staying on the branch).
    """
    validation.git_ref(base_branch, what="base branch")
    validation.git_ref(branch, what="branch")
    if branch == base_branch:
        raise PermanentGitError(f"the task branch {branch!r} is the base branch; refusing to work on it")
    assert tree.clone == clone.directory
    with lock():
        os.makedirs(clone.directory, exist_ok=True)
        created = ensure_remote(clone, url)  # config from the template, planted files and metadata gone
        clone.token_origin = credential_origin(url, clone.output("ls-remote", "--get-url", "origin"))
        tree.token_origin = clone.token_origin
        clear_interrupted_state(clone)
        # The clone itself is on no branch (an agent could point its shared HEAD at a task's branch,
        # which would keep that branch from every worktree).
        clone.run("symbolic-ref", "HEAD", f"refs/heads/{UNBORN}")
        set_excludes(clone, excludes)  # info/exclude is the clone's: every worktree reads it
        _fetch(clone, reuse_seconds=0 if created else fetch_reuse_seconds)
        default = clone.run("symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False).stdout.strip()
        if default and default.removeprefix("refs/remotes/origin/") == branch:
            raise PermanentGitError(
                f"the task branch {branch!r} is the repository's default branch; refusing to work on it"
            )
        base = clone.rev(f"refs/remotes/origin/{base_branch}")
        if base is None:
            raise PermanentGitError(f"base branch {base_branch!r} does not exist in the repository")
        mine = tree.directory.resolve() if tree.directory.exists() else tree.directory
        other = worktrees_on(clone).get(branch)
        if other is not None and other != mine and other != tree.directory:
            if other.parent != clone.directory.parent / WORKTREES or not other.name.isdigit():
                raise PermanentGitError(f"branch {branch!r} is checked out outside the service's worktrees")
            if is_busy(other):
                raise BranchInUse(
                    f"branch {branch!r} is checked out for another task ({other.name}); waiting for that run to end"
                )
            remove_worktree(clone, other)
        start, started_from = start_point(clone, branch, base)
        if not _usable(tree):
            # Missing, half-made by a crash, or its `.git` replaced: rebuilt, never reused.
            remove_worktree(clone, tree.directory)
            os.makedirs(tree.directory.parent, exist_ok=True)
            clone.run("worktree", "add", "--quiet", "--no-checkout", "-B", branch, str(tree.directory), start)
        write_gitfile(tree)
        # On the branch before the lock goes: another preparation now sees it taken.
        clear_interrupted_state(tree)
        tree.run("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        tree.run("update-ref", f"refs/heads/{branch}", start)
    # The run's own worktree: files checked out with nobody else's lock held.
    for relpath in local_files:
        set_skip_worktree(tree, relpath, False)
    tree.run("reset", "--hard", "--quiet", start)
    tree.run("clean", "-d", "--force", "--quiet")
    commit = tree.output("rev-parse", "HEAD")
    return CheckoutResult(
        branch=branch, base_branch=base_branch, commit=commit, started_from=started_from, cloned=created
    )


__all__ = ["BranchInUse", "checkout_worktree", "remove_worktree", "worktrees_on", "FETCH_REUSE_SECONDS"]
