"""Validation of every name an outsider controls that reaches Kubernetes, git or the filesystem.

Pure functions: each returns the accepted value or raises ValueError with a
message fit to show the person who sent it. The API, the workspace and the
Job builder all call these, so a name refused in one place is refused in all.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from orchestrator.model import RESERVED_ENV, RESERVED_ENV_PREFIX

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Service and agent names become parts of Job names, labels and directories.
# Keeping them short leaves room in the 63-character Job name for the task id,
# version, attempt and hash suffix.
MAX_SERVICE_LENGTH = 30
MAX_AGENT_LENGTH = 30
MARKDOWN_FILENAME = re.compile(r"^[A-Za-z0-9._-]+\.md$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SSH_URL = re.compile(r"^git@(?P<host>[A-Za-z0-9.-]+):(?P<path>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(\.git)?$")
# A conservative subset of what git allows in a branch name: nothing a shell or
# an option parser could read as syntax, even where we never pass it to a shell.
REF_CHARS = re.compile(r"[A-Za-z0-9._/-]+")
# A directory the agent is told to start in (CLAUDE.md says it in words an agent may paste
# into a shell): no spaces, quotes, `$`, backticks or other shell syntax.
PATH_CHARS = re.compile(r"[A-Za-z0-9._/@+=,-]+")
REPO_PATH = re.compile(r"^/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?(\.git)?/?$")


# Task ids: Task Master's (submitted by PMs) sit below ISSUE_TASK_ID_OFFSET; a task made
# from GitHub issue #N is ISSUE_TASK_ID_OFFSET + N. Issue numbers and Task Master ids both
# start at 1 in their own repositories, so sharing one space let issue #3 collide with PM
# task 3 (and a PM task depending on 3 wait on the issue). Both stay below 2**31.
ISSUE_TASK_ID_OFFSET = 1_000_000_000
MAX_TASK_ID = 2**31 - 1


def pm_task_id(value: int) -> int:
    """A Task Master id a PM may submit: 1 to ISSUE_TASK_ID_OFFSET - 1 (above is the issues' space)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < ISSUE_TASK_ID_OFFSET:
        raise ValueError(f"a task id must be from 1 to {ISSUE_TASK_ID_OFFSET - 1}; larger ids are GitHub issues' tasks")
    return value


def issue_task_id(issue: int) -> int:
    """The task id of GitHub issue #`issue` (ISSUE_TASK_ID_OFFSET + its number)."""
    if isinstance(issue, bool) or not isinstance(issue, int) or not 1 <= issue <= MAX_TASK_ID - ISSUE_TASK_ID_OFFSET:
        raise ValueError(f"not an issue number: {issue!r}")
    return ISSUE_TASK_ID_OFFSET + issue


def issue_of_task_id(task_id: int) -> int | None:
    """The issue number of a task made from an issue, else None (a Task Master id)."""
    return task_id - ISSUE_TASK_ID_OFFSET if task_id > ISSUE_TASK_ID_OFFSET else None


def dns_label(value: str, *, what: str = "name", max_length: int = 63) -> str:
    """A DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > max_length:
        raise ValueError(f"{what} must be at most {max_length} characters")
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{what} must be a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def service_name(value: str) -> str:
    return dns_label(value, what="service name", max_length=MAX_SERVICE_LENGTH)


def agent_name(value: str) -> str:
    return dns_label(value, what="agent name", max_length=MAX_AGENT_LENGTH)


def markdown_filename(value: str) -> str:
    """A plain file name ending in .md: no directories, no leading dot tricks."""
    if not isinstance(value, str) or not MARKDOWN_FILENAME.fullmatch(value) or value.startswith("."):
        raise ValueError("file name must match ^[A-Za-z0-9._-]+\\.md$ and not start with '.'")
    if len(value) > 128:
        raise ValueError("file name must be at most 128 characters")
    return value


def relative_path(value: str, *, what: str = "working directory") -> str:
    """A relative POSIX path that stays inside its root: no '..', no absolute path, no shell syntax."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if value in ("", "."):
        return ""
    if len(value) > 255:
        raise ValueError(f"{what} must be at most 255 characters")
    if any(ord(c) < 32 or c == "\x7f" for c in value) or "\\" in value:
        raise ValueError(f"{what} contains forbidden characters")
    if not PATH_CHARS.fullmatch(value):
        raise ValueError(f"{what} may hold only letters, digits and . _ - / @ + = ,")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError(f"{what} must be relative")
    if any(part == ".." for part in path.parts):
        raise ValueError(f"{what} must not contain '..'")
    if any(part.startswith("-") for part in path.parts):
        raise ValueError(f"{what} parts must not start with '-'")
    return str(path)


def env_name(value: str) -> str:
    """An environment variable name a shell and Kubernetes both accept."""
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value) or len(value) > 128:
        raise ValueError("environment variable names must match ^[A-Za-z_][A-Za-z0-9_]*$")
    return value


def git_ref(value: str, *, what: str = "branch") -> str:
    """A branch name git accepts (check-ref-format rules), limited to letters, digits and ._/-."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    problems = (
        len(value) > 200
        or not REF_CHARS.fullmatch(value)
        or value.startswith(("-", "/", "."))
        or value.endswith(("/", ".", ".lock"))
        or ".." in value
        or "//" in value
        or "@{" in value
        or value == "@"
        or any(ord(c) < 33 or c == "\x7f" for c in value)
        or any(c in value for c in "~^:?*[\\")
        or any(part.startswith(".") or part.endswith(".lock") for part in value.split("/"))
    )
    if problems:
        raise ValueError(f"{what} is not a valid git branch name")
    return value


def _owner_and_repository(path: str) -> None:
    """Refuse an owner or repository of dots alone: both become GitHub API paths, where `..` climbs out."""
    trimmed = path.strip("/")
    trimmed = trimmed[: -len(".git")] if trimmed.endswith(".git") else trimmed
    if any(not segment.strip(".") for segment in trimmed.split("/")):
        raise ValueError("repository URL must name an owner/repository that is not made of dots alone")


def git_url(value: str, allowed_hosts: tuple[str, ...]) -> str:
    """An https or `git@host:owner/repo.git` URL to an allowed host; never file://, http:// or options."""
    if not isinstance(value, str) or not value or len(value) > 500:
        raise ValueError("repository URL must be a non-empty string of at most 500 characters")
    if value.startswith("-") or any(ord(c) < 33 or c == "\x7f" for c in value):
        raise ValueError("repository URL contains forbidden characters")
    ssh = SSH_URL.fullmatch(value)
    if ssh:
        host = ssh.group("host").lower()
        _owner_and_repository(ssh.group("path"))
    else:
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError("repository URL must use https:// or the git@host:owner/repo.git form")
        if parts.username or parts.password:
            raise ValueError("repository URL must not carry credentials; the token is configured separately")
        if parts.query or parts.fragment:
            raise ValueError("repository URL must not have a query or fragment")
        host = (parts.hostname or "").lower()
        if parts.port not in (None, 443):
            raise ValueError("repository URL must use the default https port")
        if not REPO_PATH.fullmatch(parts.path):
            raise ValueError(
                "repository URL must name an owner and a repository, e.g. https://github.com/owner/repo.git"
            )
        _owner_and_repository(parts.path)
    if host not in {h.lower() for h in allowed_hosts}:
        raise ValueError(f"repository host {host!r} is not in the allowed list")
    return value


# Submitted env values land in Job specs and logs, so anything that looks like a
# credential is refused by name: secrets reach agents only as secretKeyRefs.
SECRET_NAME_PARTS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE",
    "APIKEY",
    "ACCESSKEY",
    "SSHKEY",
    "COOKIE",
    "SESSION",
)
SECRET_NAME_WORDS = ("KEY", "PAT", "PWD", "AUTH", "DSN")
# Names the runner sets itself, or that change how every program in the Job loads.
RESERVED_ENV_NAMES = RESERVED_ENV | {"PATH", "USER", "SHELL", "PYTHONPATH", "NODE_OPTIONS", "BASH_ENV", "ENV"}
RESERVED_ENV_PREFIXES = (RESERVED_ENV_PREFIX, "LD_", "KUBERNETES_", "GIT_", "DYLD_")
SECRET_VALUE_PREFIXES = ("ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "sk-ant-", "xoxb-", "AKIA", "-----BEGIN")


def plain_env_name(value: str) -> str:
    """An env name for a submitted, non-secret value: valid, not reserved, not credential-like."""
    env_name(value)
    upper = value.upper()
    if upper in RESERVED_ENV_NAMES or upper.startswith(RESERVED_ENV_PREFIXES):
        raise ValueError(f"environment variable {value} is reserved for the system")
    words = upper.split("_")
    if any(part in upper for part in SECRET_NAME_PARTS) or any(w in SECRET_NAME_WORDS for w in words):
        raise ValueError(
            f"environment variable {value} looks like a secret; "
            "secrets are configured as Kubernetes Secrets, not submitted"
        )
    return value


def plain_env_value(value: str) -> str:
    """A submitted env value: bounded text that does not look like a well-known credential."""
    if not isinstance(value, str) or len(value) > 4096 or "\x00" in value:
        raise ValueError("environment values must be strings of at most 4096 characters without NUL")
    if value.strip().startswith(SECRET_VALUE_PREFIXES):
        raise ValueError("environment value looks like a credential; secrets are configured as Kubernetes Secrets")
    return value
