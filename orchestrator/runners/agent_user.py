"""Who a local agent runs as: a dedicated unprivileged user when the worker runs as root.

The worker, API, watcher and Flower hold every secret of the stack in their
environment and data directory. An agent running as their user could read
them all (/proc/<pid>/environ, the token files); an agent running as another,
unprivileged user cannot. The workspace it works in is handed over to it.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_USER = "orchestrator-agent"  # what `orchestrator up` run as root uses unless told otherwise


@dataclass(frozen=True)
class AgentUser:
    """The account agents run as."""

    name: str
    uid: int
    gid: int
    home: str

    def as_spec(self) -> dict[str, object]:
        return {"name": self.name, "uid": self.uid, "gid": self.gid, "home": self.home}


def lookup(name: str) -> AgentUser | None:
    """The user called `name`, or None when it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return AgentUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def ensure(name: str) -> AgentUser:
    """The user `name`, created as a system user with its own group and home when missing (needs root).

    Raises OSError when it cannot be created (no useradd, not root).
    """
    found = lookup(name)
    if found is not None:
        return found
    home = f"/var/lib/{name}"
    try:
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--create-home",
                "--home-dir",
                home,
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"cannot run useradd: {exc}") from None
    found = lookup(name)
    if found is None:
        raise OSError(f"useradd {name} failed: {(result.stderr or result.stdout).strip() or result.returncode}")
    return found


def can_traverse(path: Path, user: AgentUser) -> bool:
    """True when `user` (no supplementary groups) may search the directory `path`."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def unreachable(path: Path, user: AgentUser) -> Path | None:
    """The first directory on the way to `path` (itself included when a directory) `user` cannot enter."""
    path = Path(os.path.abspath(path))
    for directory in [*reversed(path.parents), path]:
        if directory.is_dir() and not can_traverse(directory, user):
            return directory
    return None


def hand_over(directory: Path, user: AgentUser) -> None:
    """Make `directory` and everything under it the agent's, never following a symbolic link.

    A link planted by an earlier run must not turn this into a chown of
    whatever it points to, so links are changed themselves (lchown) and not entered.
    """
    os.chown(directory, user.uid, user.gid, follow_symlinks=False)
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in (*dirs, *files):
            try:
                os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
            except FileNotFoundError:
                pass


def let_through(top: Path, directory: Path, user: AgentUser) -> None:
    """Let the agent's group pass (enter, not list) through every directory from `top` down to `directory`.

    `up` writes under umask 077, so a service's directory and its `worktrees/`
    were 0700 root: an agent reached its checkout only as its working directory,
    and every absolute path in it (which Claude Code's tools use), and the
    service clone's `.git` its worktree commits through, were refused to it.
    A `directory` outside `top` is no part of the workspace: nothing is opened.
    """
    top = top.resolve()
    current = directory.resolve()
    if current != top and top not in current.parents:
        return
    passage = [current, *(p for p in current.parents if p == top or top in p.parents)]
    for path in passage[1:]:  # the checkout itself is handed over, not opened
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise ValueError(f"{path} is a symbolic link")
        if info.st_gid != user.gid:
            os.chown(path, -1, user.gid, follow_symlinks=False)
        if not info.st_mode & stat.S_IXGRP:
            os.chmod(path, stat.S_IMODE(info.st_mode) | stat.S_IXGRP)
