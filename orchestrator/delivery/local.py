"""Local repositories (ORCHESTRATOR_ALLOW_LOCAL_REPOS): a `file://` URL or an absolute path on this machine.

Only with the setting on; every other URL keeps the https/ssh rules of
`orchestrator.validation.git_url`. Git itself refuses the `file` protocol in
our calls (`protocol.file.allow=never`); `LocalGit` allows it for the one
repository the task names, and nothing else changes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator import validation
from orchestrator.workspace.git import Git


def is_local_url(url: Any) -> bool:
    """True for `file://...` and absolute paths (whether or not local repositories are allowed)."""
    return isinstance(url, str) and (url.startswith("file://") or url.startswith("/"))


def local_path(url: str) -> Path:
    """The repository directory a local URL names; ValueError when it is not a usable one."""
    if not isinstance(url, str) or not url or len(url) > 1000:
        raise ValueError("repository URL must be a non-empty string of at most 1000 characters")
    if any(ord(c) < 32 or c == "\x7f" for c in url):
        raise ValueError("repository URL contains forbidden characters")
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError("a file:// repository URL must name a path on this machine (file:///path/to/repo)")
        raw = unquote(parts.path)
    else:
        raw = url
    path = Path(raw)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError("a local repository must be an absolute path without '..'")
    if not path.is_dir():
        raise ValueError(f"local repository {raw} does not exist")
    if not ((path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())):
        raise ValueError(f"{raw} is not a git repository")
    return path


def check_repository_url(url: str, settings: Any) -> str:
    """The URL when a task may use it: a local repository (when allowed) or an https/ssh URL to an allowed host."""
    if is_local_url(url):
        if not getattr(settings, "allow_local_repos", False):
            raise ValueError(
                "repository URL must use https:// or the git@host:owner/repo.git form "
                "(local repositories need ORCHESTRATOR_ALLOW_LOCAL_REPOS=true)"
            )
        local_path(url)
        return url
    return validation.git_url(url, tuple(settings.allowed_git_hosts))


class LocalGit(Git):
    """`Git` that may fetch from and push to a repository on this machine (the file protocol)."""

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        # A later `-c` wins over the `protocol.file.allow=never` of our safety settings.
        return super().run("-c", "protocol.file.allow=always", *args, **kwargs)


def git_for(url: str | None, directory: Path, **kwargs: Any) -> Git:
    """The Git to use for a task's repository: LocalGit for a local one."""
    return (LocalGit if url and is_local_url(url) else Git)(directory, **kwargs)
