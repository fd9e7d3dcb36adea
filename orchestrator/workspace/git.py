"""Git for the workspace: clone or refresh a checkout, put it on the task's branch.

Every call runs `git` with an argument list (no shell), `--` before names that
come from input, validated refs and URLs, no terminal prompt and a timeout.

The token reaches git only through the environment of the git process: a
credential helper given on the command line (`-c credential.helper=...`, never
stored in `.git/config`) prints it when git asks. So the token never appears in
the remote URL, the repository, a task file or an argument list, and git's
messages are scrubbed of it anyway before anyone sees them.

An agent of an earlier run had write access to this checkout, `.git/` included,
and git runs here inside the worker, which holds secrets. So git in the worker
never honours anything an agent could have written:

- before the first git command of a preparation, `.git/config` is rewritten
  from a known template (the origin remote and nothing else an agent could
  use), and the files git would read beside it are removed: `config.worktree`,
  `commondir`, linked `worktrees/`, `info/attributes`, object `alternates`
  and `hooks/` (`reset_git_dir`); a `.git` with symbolic links where git
  reads refs and objects is refused (`linked_paths`);
- every call runs without system or global configuration and with overrides
  on the command line that disable hooks, fsmonitor, attribute files,
  submodule recursion, and the `ext` and `file` transports;
- the credential helper answers only for the protocol and host the task's
  repository resolves to under the worker's own configuration, and nothing
  otherwise, so a rewrite that slipped through still gets no token.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.logs import scrub as scrub_secrets
from orchestrator.workspace.files import atomic_write

log = logging.getLogger("orchestrator.workspace.git")

TOKEN_ENV = "ORCHESTRATOR_GIT_TOKEN"
# GitHub accepts any user name with a token; this one works for app and personal tokens alike.
TOKEN_USER = "x-access-token"
TOKEN_PROTOCOL_ENV = "ORCHESTRATOR_GIT_TOKEN_PROTOCOL"
TOKEN_HOST_ENV = "ORCHESTRATOR_GIT_TOKEN_HOST"
# The helper reads the token from its environment when git asks (`get`), and
# ignores `store` and `erase`, so nothing is ever written down. It answers
# only when git asks for exactly the protocol and host the task's repository
# resolves to: a URL rewrite or redirect to another host gets nothing.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; test -n "$' + TOKEN_ENV + '" || return 0; '
    'p=; h=; while IFS= read -r l; do case "$l" in protocol=*) p="${l#protocol=}";; host=*) h="${l#host=}";; '
    'esac; done; test -n "$' + TOKEN_PROTOCOL_ENV + '" && test "$p" = "$' + TOKEN_PROTOCOL_ENV + '" && '
    'test "$h" = "$' + TOKEN_HOST_ENV + '" || return 0; '
    "printf 'username=%s\\npassword=%s\\n' " + TOKEN_USER + ' "$' + TOKEN_ENV + '"; }; f'
)
# Environment that would point git somewhere else than the directory we name.
_DROPPED_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_TRACE",
        "GIT_TRACE_CURL",
        "GIT_TRACE_PACKET",
        "GIT_CURL_VERBOSE",
        "GIT_CONFIG",
        "GIT_CONFIG_SYSTEM",
        "GIT_EXEC_PATH",
        "GIT_TEMPLATE_DIR",
        "GIT_REPLACE_REF_BASE",
    }
)
# What git would read in `.git/` besides its config, and an agent could write:
# a second config file (`config.worktree`, a linked worktree's), another
# repository's directory (`commondir`), filter drivers by attribute, another
# repository's objects (another service's code on the same volume), commands
# to run (hooks).
PLANTABLE_PATHS: tuple[str, ...] = (
    "config.worktree",
    "commondir",
    "worktrees",
    "info/attributes",
    "objects/info/alternates",
    "objects/info/http-alternates",
    "info/grafts",
    "hooks",
)
# Settings `git init` probed from the filesystem; booleans, so an agent's value can do no harm.
_FILESYSTEM_SETTINGS = ("filemode", "symlinks", "ignorecase", "precomposeunicode")
FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
EXCLUDE_BEGIN = "# >>> orchestrator: files written before each run"
EXCLUDE_END = "# <<< orchestrator"

_TRANSIENT = re.compile(
    r"could not resolve host|couldn't resolve host|temporary failure in name resolution|connection refused|"
    r"connection timed out|operation timed out|timed out|connection reset|failed to connect|"
    r"the requested url returned error: 5\d\d|http 5\d\d|rpc failed|early eof|unexpected disconnect|"
    r"remote end hung up|gnutls_handshake|ssl_error|tls connection|network is unreachable|no route to host|"
    r"index\.lock|unable to access .*: (recv|send)|transfer closed|service unavailable|bad gateway|"
    r"too many requests|returned error: 429",
    re.IGNORECASE,
)
_PERMANENT = re.compile(
    r"authentication failed|could not read username|could not read password|terminal prompts disabled|"
    r"returned error: 40[1-4]|repository not found|not found|does not appear to be a git repository|"
    r"permission denied|invalid username or password|couldn't find remote ref|not a valid|"
    r"invalid refspec|host key verification failed",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(authorization:\s*\w+\s+)\S+", re.IGNORECASE)


class GitError(Exception):
    """A git operation failed; the message is already scrubbed of secrets."""

    transient = False


class TransientGitError(GitError):
    """Worth another try later: unreachable host, timeout, server error."""

    transient = True


class PermanentGitError(GitError):
    """Another try will fail the same way: bad credentials, missing branch, wrong remote."""


class WrongRemote(PermanentGitError):
    """The directory holds a checkout of another repository."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` without any of the secrets, credentials in URLs or authorization headers."""
    text = scrub_secrets(text, secrets)
    text = _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)
    return _AUTH_HEADER.sub(lambda m: m.group(1) + "***", text)


def classify(message: str, *, network: bool) -> bool:
    """True when a failure with this message is transient (worth retrying)."""
    if _TRANSIENT.search(message):
        return True
    if _PERMANENT.search(message):
        return False
    # An unknown failure while talking to a server is more often a glitch than
    # a lasting fault; retries are bounded, so guessing transient costs little.
    return network


def normalize_url(url: str) -> str:
    """A repository URL reduced to what identifies the repository (host case, `.git`, trailing `/`)."""
    value = url.strip().rstrip("/")
    if value.endswith(".git"):
        value = value[:-4]
    match = re.match(r"^(?P<scheme>[a-z]+://)(?P<host>[^/]+)(?P<path>/.*)?$", value, re.IGNORECASE)
    if match:
        return match.group("scheme").lower() + match.group("host").lower() + (match.group("path") or "")
    ssh = re.match(r"^(?P<user>[^@]+)@(?P<host>[^:]+):(?P<path>.*)$", value)
    if ssh:
        return f"ssh://{ssh.group('user')}@{ssh.group('host').lower()}/{ssh.group('path')}"
    return value


@dataclass(frozen=True)
class CheckoutResult:
    """Where a checkout stands after preparation (`worktree.checkout_worktree`)."""

    branch: str
    base_branch: str
    commit: str
    started_from: str  # "local" (the branch existed here), "remote" (pushed earlier) or "base"
    cloned: bool


@dataclass
class Git:
    """Runs git commands in one directory with our safety settings."""

    directory: Path
    token: str = ""
    timeout: float = 120.0
    secrets: Sequence[str] = field(default_factory=tuple)
    # (protocol, host) the credential helper gives the token to; None: to nobody.
    token_origin: tuple[str, str] | None = None
    # A task's worktree: the service's shared clone, whose `.git` holds this worktree's
    # metadata (derived from the layout, never read from the worktree's `.git` file).
    clone: Path | None = None

    @property
    def git_dir(self) -> Path:
        """Where this checkout's own git state lives (HEAD, index, in-progress operations)."""
        if self.clone is not None:
            return self.clone / ".git" / "worktrees" / self.directory.name
        return self.directory / ".git"

    @property
    def common_dir(self) -> Path:
        """Where config, refs, objects and info/exclude live (shared by every worktree of a clone)."""
        return (self.clone if self.clone is not None else self.directory) / ".git"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        protocol, host = self.token_origin or ("", "")
        env.update(
            {
                "GIT_TERMINAL_PROMPT": "0",
                # Only the repository's own config (rewritten from our template) and the
                # worker's environment and command line count: never a file elsewhere.
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_ATTR_NOSYSTEM": "1",
                "GIT_NO_REPLACE_OBJECTS": "1",  # refs/replace/ would let the checkout's refs swap objects
                "LC_ALL": "C",  # messages in English, so classification works
                "LANGUAGE": "C",
                TOKEN_ENV: self.token,
                TOKEN_PROTOCOL_ENV: protocol,
                TOKEN_HOST_ENV: host,
            }
        )
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        return env

    def _config_args(self) -> list[str]:
        return [
            "-c",
            "credential.helper=",
            "-c",
            f"credential.helper={CREDENTIAL_HELPER}",
            "-c",
            "core.askPass=",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.attributesFile=/dev/null",
            "-c",
            "submodule.recurse=false",
            "-c",
            "fetch.recurseSubmodules=false",
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "protocol.file.allow=never",
            "-c",
            f"safe.directory={self.directory}",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=orchestrator-unborn",
        ]

    def run(
        self, *args: str, network: bool = False, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `git <args>` in the directory; raise a classified GitError on failure when `check`."""
        argv = ["git", *self._config_args(), *args]
        what = f"git {args[0]}" if args else "git"
        process = subprocess.Popen(
            argv,
            cwd=self.directory,
            env=self._env(),
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(input=input, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise TransientGitError(f"{what} timed out after {self.timeout:g} seconds") from None
        except BaseException:
            _kill_group(process)  # e.g. the step's soft time limit: leave no git behind
            raise
        result = subprocess.CompletedProcess(argv, process.returncode, out, err)
        if check and result.returncode != 0:
            message = scrub((err or out or "").strip(), [self.token, *self.secrets])
            message = message[-2000:] or f"exit status {result.returncode}"
            error = TransientGitError if classify(message, network=network) else PermanentGitError
            raise error(f"{what} failed: {message}")
        return result

    def output(self, *args: str, network: bool = False) -> str:
        return self.run(*args, network=network).stdout.strip()

    def ok(self, *args: str) -> bool:
        return self.run(*args, check=False).returncode == 0

    def rev(self, ref: str) -> str | None:
        """The commit `ref` names, or None."""
        result = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
        return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Stop git and the helpers it started (git-remote-https, ssh)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def clear_interrupted_state(git: Git) -> None:
    """Forget what a crashed git process or agent left: locks, rebases, merges in progress."""
    git_dir = git.git_dir
    for name in ("index.lock", "HEAD.lock", "shallow.lock", "config.lock"):
        (git_dir / name).unlink(missing_ok=True)
    for name in ("rebase-merge", "rebase-apply", "sequencer"):
        path = git_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
    for name in ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG"):
        (git_dir / name).unlink(missing_ok=True)


def set_excludes(git: Git, patterns: Sequence[str]) -> None:
    """Keep our files out of `git status` and `git add` via `.git/info/exclude` (never committed)."""
    info = git.common_dir / "info"
    info.mkdir(parents=True, exist_ok=True)
    path = info / "exclude"
    existing = path.read_text() if path.is_file() else ""
    kept, skipping = [], False
    for line in existing.splitlines():
        if line == EXCLUDE_BEGIN:
            skipping = True
        elif line == EXCLUDE_END:
            skipping = False
        elif not skipping:
            kept.append(line)
    block = [EXCLUDE_BEGIN, *patterns, EXCLUDE_END]
    atomic_write(path, "\n".join([*kept, *block]) + "\n")


def is_tracked(git: Git, relpath: str) -> bool:
    return git.ok("ls-files", "--error-unmatch", "--", relpath)


def set_skip_worktree(git: Git, relpath: str, skip: bool) -> None:
    """Hide (or stop hiding) our changes to a tracked file from `git add` and `git status`."""
    flag = "--skip-worktree" if skip else "--no-skip-worktree"
    git.run("update-index", flag, "--", relpath, check=False)
