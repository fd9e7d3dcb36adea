"""The git half of delivery: commit the agent's leftovers, measure the branch, push it.

Everything goes through `orchestrator.workspace.git.Git` (its safety settings,
timeout, credential helper and scrubbing): the token reaches git only in the
helper's environment. Each function is safe to repeat: a second commit finds
nothing to commit, a second push finds the remote already at our commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.workspace.git import Git, GitError, PermanentGitError, clear_interrupted_state
from orchestrator.workspace.gitdir import credential_origin, ensure_remote

_SHORTSTAT = re.compile(r"(\d+) (file|insertion|deletion)")
_NOT_FAST_FORWARD = re.compile(r"non-fast-forward|fetch first|\[rejected\]", re.IGNORECASE)


class DeliveryError(Exception):
    """Delivery cannot go on; `transient`: a later try may work."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class BranchState:
    """Where the task's branch stands against its base."""

    branch: str
    base: str
    commit: str
    commits: int
    diffstat: dict[str, int] = field(default_factory=dict)
    committed: bool = False  # delivery committed the agent's leftovers this time


def co_author(agent: str) -> str:
    """The `Co-authored-by` trailer value of the agent."""
    name = re.sub(r"[<>\n]", "", agent or "agent").strip() or "agent"
    if name.lower() == "claude":
        return "Claude <noreply@anthropic.com>"
    slug = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-") or "agent"
    return f"{name} <{slug}@agents.orchestrator.invalid>"


def _subject(title: str) -> str:
    line = " ".join(str(title or "").split())
    return (line[:69] + "…") if len(line) > 72 else (line or "Changes by the agent")


def current_branch(git: Git) -> str:
    return git.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()


def commit_leftovers(git: Git, *, title: str, agent: str, identity: tuple[str, str], task_ref: str) -> bool:
    """Commit every change the agent left (our own files are excluded from git); True when it committed."""
    if not git.run("status", "--porcelain", "--untracked-files=all").stdout.strip():
        return False
    git.run("add", "--all", "--", ".")
    if git.ok("diff", "--cached", "--quiet"):
        return False  # only changes git does not track after all (modes, ignored files)
    name, email = identity
    message = (
        f"{_subject(title)}\n\nChanges left uncommitted by the agent, committed by the orchestrator "
        f"for task {task_ref}.\n\nCo-authored-by: {co_author(agent)}\n"
    )
    try:
        git.run(
            "-c",
            f"user.name={name}",
            "-c",
            f"user.email={email}",
            "commit",
            "--quiet",
            "--no-verify",
            "--no-gpg-sign",
            f"--author={name} <{email}>",
            "--message",
            message,
        )
    except GitError as exc:
        raise DeliveryError(f"commit failed: {exc}") from None
    return True


def branch_state(git: Git, *, branch: str, base: str, committed: bool = False) -> BranchState:
    """Commits of HEAD beyond the remote's base branch and what they change."""
    base_ref = f"refs/remotes/origin/{base}"
    if git.rev(base_ref) is None:
        raise DeliveryError(f"base branch {base!r} is unknown in the checkout")
    head = git.output("rev-parse", "HEAD")
    commits = int(git.output("rev-list", "--count", f"{base_ref}..HEAD") or 0)
    diffstat = {"files": 0, "insertions": 0, "deletions": 0}
    if commits:
        text = git.output("diff", "--shortstat", f"{base_ref}...HEAD")
        for number, kind in _SHORTSTAT.findall(text):
            diffstat[{"file": "files", "insertion": "insertions", "deletion": "deletions"}[kind]] = int(number)
    return BranchState(branch=branch, base=base, commit=head, commits=commits, diffstat=diffstat, committed=committed)


def prepare_checkout(git: Git, branch: str, url: str) -> None:
    """Make the checkout safe to commit and push from: no planted settings, no half-done operation, on `branch`.

    The agent had write access to `.git`: its config is rewritten from our
    template (origin = the task's repository) and planted files go, as before a
    preparation; the token is offered only to the origin's protocol and host.
    """
    ensure_remote(git, url)
    git.token_origin = credential_origin(url, git.output("ls-remote", "--get-url", "origin"))
    clear_interrupted_state(git)
    current = current_branch(git)
    if current != branch:
        raise DeliveryError(
            f"the agent left the checkout on {current or 'a detached HEAD'}, not on the task's "
            f"branch {branch}; its work was not delivered"
        )


def remote_head(git: Git, branch: str) -> str | None:
    """The commit the remote's `branch` points at, or None when it has no such branch."""
    out = git.output("ls-remote", "--heads", "origin", f"refs/heads/{branch}", network=True)
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.strip() == f"refs/heads/{branch}":
            return sha.strip()
    return None


def push(git: Git, branch: str, commit: str) -> bool:
    """Push `branch` to origin unless it is there already; True when it pushed."""
    if remote_head(git, branch) == commit:
        return False
    try:
        git.run("push", "--no-verify", "origin", f"refs/heads/{branch}:refs/heads/{branch}", network=True)
    except GitError as exc:
        message = str(exc)
        if _NOT_FAST_FORWARD.search(message) and "pre-receive" not in message:
            raise DeliveryError(
                f"push refused: the remote branch {branch} has commits the task's branch has not ({message})"
            ) from None
        raise DeliveryError(f"push refused: {message}", transient=exc.transient) from None
    return True


def as_fields(state: BranchState) -> dict[str, Any]:
    """The run fields a branch state fills."""
    return {
        "branch": state.branch,
        "base": state.base,
        "commit": state.commit,
        "commits": state.commits,
        "diffstat": state.diffstat,
    }


__all__ = [
    "BranchState",
    "DeliveryError",
    "PermanentGitError",
    "as_fields",
    "branch_state",
    "co_author",
    "commit_leftovers",
    "prepare_checkout",
    "push",
    "remote_head",
]
