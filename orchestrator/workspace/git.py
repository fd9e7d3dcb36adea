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

import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator import validation
from orchestrator.logs import scrub as scrub_secrets
from orchestrator.workspace.files import atomic_write, remove_path

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
_DROPPED_ENV = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_TRACE", "GIT_TRACE_CURL",
    "GIT_TRACE_PACKET", "GIT_CURL_VERBOSE", "GIT_CONFIG", "GIT_CONFIG_SYSTEM", "GIT_EXEC_PATH",
    "GIT_TEMPLATE_DIR", "GIT_REPLACE_REF_BASE",
})
# What git would read in `.git/` besides its config, and an agent could write:
# a second config file (`config.worktree`, a linked worktree's), another
# repository's directory (`commondir`), filter drivers by attribute, another
# repository's objects (another service's code on the same volume), commands
# to run (hooks).
PLANTABLE_PATHS: tuple[str, ...] = (
    "config.worktree", "commondir", "worktrees", "info/attributes", "objects/info/alternates",
    "objects/info/http-alternates", "info/grafts", "hooks",
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
    """Where a checkout stands after `checkout_branch`."""

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
        env.update({
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
        })
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        return env

    def _config_args(self) -> list[str]:
        return [
            "-c", "credential.helper=",
            "-c", f"credential.helper={CREDENTIAL_HELPER}",
            "-c", "core.askPass=",
            "-c", "core.hooksPath=/dev/null",
            "-c", "core.fsmonitor=false",
            "-c", "core.attributesFile=/dev/null",
            "-c", "submodule.recurse=false",
            "-c", "fetch.recurseSubmodules=false",
            "-c", "protocol.ext.allow=never",
            "-c", "protocol.file.allow=never",
            "-c", f"safe.directory={self.directory}",
            "-c", "advice.detachedHead=false",
            "-c", "init.defaultBranch=orchestrator-unborn",
        ]

    def run(self, *args: str, network: bool = False, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `git <args>` in the directory; raise a classified GitError on failure when `check`."""
        argv = ["git", *self._config_args(), *args]
        what = f"git {args[0]}" if args else "git"
        process = subprocess.Popen(
            argv, cwd=self.directory, env=self._env(), stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
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


def render_config(url: str | None, filesystem: dict[str, bool]) -> str:
    """The whole `.git/config` of a checkout of ours: core settings and the origin remote, nothing else."""
    lines = ["[core]", "\trepositoryformatversion = 0", "\tbare = false", "\tlogallrefupdates = true"]
    lines += [f"\t{name} = {'true' if value else 'false'}" for name, value in sorted(filesystem.items())]
    if url is not None:
        if any(c in url for c in '"\\') or any(ord(c) < 32 or c == "\x7f" for c in url):
            raise PermanentGitError("the repository URL cannot be written to git's configuration")
        lines += ['[remote "origin"]', f'\turl = "{url}"', f"\tfetch = {FETCH_REFSPEC}"]
    return "\n".join(lines) + "\n"


def _config_file_values(git: Git, *args: str) -> list[str]:
    """Values read from `.git/config` alone: no includes, no other file. Nothing found: []."""
    result = git.run("config", "--file", str(git.directory / ".git" / "config"), "--no-includes", *args,
                     check=False)
    if result.returncode not in (0, 1):  # 1: no such key; anything else: a file git cannot read
        message = scrub((result.stderr or "").strip(), [git.token, *git.secrets])[-500:]
        raise PermanentGitError(f"the checkout's .git/config cannot be read ({message}); refusing to reuse it")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def remove_planted_files(git_dir: Path, *, keep: Sequence[str] = ()) -> list[str]:
    """Remove what git would read in `.git/` beside its config (PLANTABLE_PATHS); return what was there.

    `keep`: paths that are ours here (a service clone's `worktrees/`, hardened by `harden_worktrees`).
    """
    removed = []
    for relpath in PLANTABLE_PATHS:
        if relpath in keep:
            continue
        path = git_dir / relpath
        if not (path.exists() or path.is_symlink()):
            continue
        if relpath == "hooks" and path.is_dir() and not path.is_symlink() and all(
                entry.name.endswith(".sample") and entry.is_file() and not entry.is_symlink()
                for entry in path.iterdir()):
            continue  # the samples `git init` copies: never run, nothing planted
        remove_path(path)
        removed.append(relpath)
    return removed


def linked_paths(git_dir: Path) -> list[str]:
    """Symbolic links where git reads refs and objects or writes reflogs, relative to `git_dir`.

    In a checkout they would let git read another repository on the volume
    (another service's objects and branches, checked out here) or write
    outside it. Loose object files are not looked at: linking one needs the
    hash of what it would reveal. The PLANTABLE_PATHS are left out: they are
    removed anyway (a link is unlinked, never followed).
    """
    found = []
    for sub in ("", "info", "objects", "objects/info", "objects/pack"):
        directory = git_dir / sub
        if directory.is_dir() and not directory.is_symlink():
            found += [f"{sub}/{e.name}".lstrip("/") for e in os.scandir(directory) if e.is_symlink()]
    for sub in ("refs", "logs"):
        top = git_dir / sub
        if top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):  # symbolic links to directories are listed, never entered
                found += [str(Path(root, name).relative_to(git_dir)) for name in dirs + files
                          if os.path.islink(os.path.join(root, name))]
    return sorted(path for path in found if path not in PLANTABLE_PATHS)


def refuse_linked(git_dir: Path) -> None:
    """Raise PermanentGitError when `linked_paths` finds any."""
    linked = linked_paths(git_dir)
    if linked:
        shown = ", ".join(linked[:5]) + (" ..." if len(linked) > 5 else "")
        raise PermanentGitError(f"the checkout's .git holds symbolic links ({shown}); refusing to use it")


def reset_git_dir(git: Git, url: str | None, *, fresh: bool = False) -> list[str]:
    """Rewrite `.git/config` from our template with `url` as origin, and remove planted files.

    Returns what differed from what we would have written, for the log (not
    logged when `fresh`: `git init` just wrote its own config). Run before any
    other git command of a preparation: until then the directory holds
    whatever an agent left.
    """
    git_dir = git.directory / ".git"
    removed = remove_planted_files(git_dir, keep=_kept(git))
    config = git_dir / "config"
    filesystem = {}
    if config.is_file():
        pattern = "^core\\.(" + "|".join(_FILESYSTEM_SETTINGS) + ")$"
        for line in _config_file_values(git, "--get-regexp", pattern):
            key, _, value = line.partition(" ")
            if value.lower() in ("true", "false"):  # anything else: git's default
                filesystem[key.removeprefix("core.")] = value.lower() == "true"
    wanted = render_config(url, filesystem)
    if config.is_symlink() or not config.is_file() or config.read_text(errors="replace") != wanted:
        if config.is_symlink() or config.exists():
            removed.append("config")
        if config.is_dir() and not config.is_symlink():
            remove_path(config)
        atomic_write(config, wanted)  # the rename replaces a link rather than writing through it
    if removed and not fresh:
        log.warning("reset git settings an agent could have planted in %s: %s", git.directory, ", ".join(removed))
    return removed


def credential_origin(task_url: str, resolved_url: str) -> tuple[str, str] | None:
    """(protocol, host) the token may be sent to, as git's credential protocol names them; None: nowhere.

    `resolved_url` is where git sends the task's URL once the worker's own
    configuration (its environment or command line; never the checkout's,
    which is our template by then) has rewritten it. https only, except
    after a rewrite by that configuration (a mirror, the tests' local
    server); never ssh (git asks no credential helper there).
    """
    parts = urlsplit(resolved_url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        return None
    if scheme == "http" and resolved_url == task_url:
        return None
    return scheme, parts.netloc.rpartition("@")[2]


def ensure_remote(git: Git, url: str) -> bool:
    """Make `origin` point at `url` in a config rewritten from our template; raise WrongRemote when the
    directory holds a checkout of another repository.

    Returns True when the repository was initialised here (first use).
    """
    if git.clone is not None:
        return _ensure_worktree_remote(git, url)
    git_dir = git.directory / ".git"
    if _kept(git) and git_dir.is_dir() and not git_dir.is_symlink() and not (git_dir / "HEAD").exists():
        remove_path(git_dir)  # an empty `.git` (a Job's mount created it): not a repository yet
    if not (git.directory / ".git").exists():
        git.run("init", "--quiet")
        reset_git_dir(git, url, fresh=True)
        return True
    # Reading `.git/config` as a file runs nothing; every other git command waits for the template.
    # Links first: removing a planted file through a linked directory would remove one elsewhere.
    refuse_linked(git.directory / ".git")
    remove_planted_files(git.directory / ".git", keep=_kept(git))
    urls = _config_file_values(git, "--get-all", "remote.origin.url")
    if not urls:
        reset_git_dir(git, None)
        if git.rev("HEAD"):
            # A checkout with history but no origin is not one we made.
            raise WrongRemote("the service directory holds a git checkout without an origin remote; "
                              "refusing to reuse it")
        reset_git_dir(git, url)
        return True
    if len(urls) > 1 or normalize_url(urls[0]) != normalize_url(url):
        shown = scrub(urls[0], git.secrets)
        raise WrongRemote(f"the service directory holds a checkout of another repository ({shown}); "
                          "refusing to reuse it")
    # The same repository (maybe spelled differently): keep the spelling the checkout was made with.
    reset_git_dir(git, urls[0])
    if _kept(git):
        harden_worktrees(git.directory)
    drop_broken_refs(git)
    return False


SHARED_CLONE_MARK = ".clone"  # layout.CLONE_DIR: a clone whose `worktrees/` is ours
WORKTREE_ADMIN_FILES = ("HEAD", "ORIG_HEAD", "index", "logs", "commondir", "gitdir", "FETCH_HEAD", "AUTO_MERGE")


def _kept(git: Git) -> tuple[str, ...]:
    return ("worktrees",) if git.clone is None and git.directory.name == SHARED_CLONE_MARK else ()


def worktree_gitfile(name: str) -> str:
    """The `.git` file of worktree `name`: relative, so it reads the same in the worker and in an agent's Job
    (`<service>/worktrees/<name>` -> `<service>/.clone/.git/worktrees/<name>`)."""
    return f"gitdir: ../../{SHARED_CLONE_MARK}/.git/worktrees/{name}\n"


def harden_worktrees(clone: Path) -> list[str]:
    """Make every worktree's metadata in the shared clone ours again; return the names removed.

    An agent sees the clone's `.git` (it commits through it), so it could plant
    a `config.worktree`, point `commondir` or `gitdir` elsewhere, lock a
    worktree, or put links where git reads. Names that are not task ids, and
    metadata with a link anywhere inside, are removed (the worktree is rebuilt
    at its next preparation); the rest get `commondir` and `gitdir` rewritten and
    everything but git's own per-worktree files removed.
    """
    admin_root = clone / ".git" / "worktrees"
    removed: list[str] = []
    if not admin_root.is_dir() or admin_root.is_symlink():
        if admin_root.is_symlink() or admin_root.exists():
            remove_path(admin_root)
        return removed
    for entry in list(admin_root.iterdir()):
        planted = not (entry.name.isdigit() and entry.is_dir() and not entry.is_symlink())
        if not planted:
            for root, dirs, files in os.walk(entry):
                if any(os.path.islink(os.path.join(root, n)) for n in dirs + files):
                    planted = True
                    break
        if planted:
            remove_path(entry)
            removed.append(entry.name)
            continue
        for child in list(entry.iterdir()):
            if child.name not in WORKTREE_ADMIN_FILES and not child.name.endswith(".lock"):
                remove_path(child)  # config.worktree, locked, hooks, info/, anything else
        worktree = clone.parent / "worktrees" / entry.name
        for name, content in (("commondir", "../..\n"), ("gitdir", f"{worktree / '.git'}\n")):
            path = entry / name
            if not path.is_file() or path.read_text(errors="replace") != content:
                atomic_write(path, content)
    if removed:
        log.warning("removed worktree metadata an agent could have planted in %s: %s", clone, ", ".join(removed))
    return removed


def write_gitfile(git: Git) -> None:
    """Rewrite the worktree's `.git` file (an agent may have pointed it elsewhere or made it a directory)."""
    path = git.directory / ".git"
    wanted = worktree_gitfile(git.directory.name)
    if path.is_symlink() or not path.is_file() or path.read_text(errors="replace") != wanted:
        if path.is_symlink() or path.exists():
            remove_path(path)
        atomic_write(path, wanted)


def _ensure_worktree_remote(git: Git, url: str) -> bool:
    """`ensure_remote` for a task's worktree: the shared clone's config and metadata rebuilt, the `.git` file ours."""
    assert git.clone is not None
    clone = dataclasses.replace(git, directory=git.clone, clone=None)  # the same kind (LocalGit too)
    ensure_remote(clone, url)
    if not git.git_dir.is_dir():
        raise PermanentGitError("the worktree's metadata is gone from the shared clone; "
                                "its next preparation rebuilds the worktree")
    write_gitfile(git)
    return False


def drop_broken_refs(git: Git) -> list[str]:
    """Delete refs whose commits are missing (they lived in alternates we removed); git refuses to fetch
    with them. Returns their names."""
    listed = git.output("for-each-ref", "--format=%(objectname) %(refname)")
    refs = [line.split(" ", 1) for line in listed.splitlines() if " " in line]
    if not refs:
        return []
    checked = git.run("cat-file", "--batch-check=%(objectname)", input="".join(f"{oid}\n" for oid, _ in refs))
    missing = {line.split()[0] for line in checked.stdout.splitlines() if line.endswith(" missing")}
    dropped = [name for oid, name in refs if oid in missing]
    for name in dropped:
        git.run("update-ref", "--no-deref", "-d", name)
    if dropped:
        log.warning("deleted refs without their objects in %s: %s", git.directory, ", ".join(dropped))
    return dropped


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


def checkout_branch(git: Git, *, url: str, base_branch: str, branch: str,
                    local_files: Sequence[str] = (), excludes: Sequence[str] = ()) -> CheckoutResult:
    """Clone or refresh the checkout and leave it clean on `branch`.

    The branch keeps the work committed on it earlier (locally, or pushed to
    the remote); otherwise it is created from the remote's `base_branch`.
    Uncommitted changes and untracked files (except ignored ones) are
    discarded, so the agent starts from committed state only.
    """
    validation.git_ref(base_branch, what="base branch")
    validation.git_ref(branch, what="branch")
    if branch == base_branch:
        raise PermanentGitError(f"the task branch {branch!r} is the base branch; refusing to work on it")
    created = ensure_remote(git, url)
    git.token_origin = credential_origin(url, git.output("ls-remote", "--get-url", "origin"))
    clear_interrupted_state(git)
    # Before `git clean`: files listed here survive it (our task files, other tasks' too).
    set_excludes(git, excludes)
    for relpath in local_files:
        set_skip_worktree(git, relpath, False)
    git.run("fetch", "--prune", "--no-tags", "--no-recurse-submodules", "--quiet", "origin", network=True)
    # Learn the remote's default branch (what clone would record); best effort.
    git.run("remote", "set-head", "origin", "--auto", network=True, check=False)
    default = git.run("symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False).stdout.strip()
    if default and default.removeprefix("refs/remotes/origin/") == branch:
        raise PermanentGitError(
            f"the task branch {branch!r} is the repository's default branch; refusing to work on it")
    base = git.rev(f"refs/remotes/origin/{base_branch}")
    if base is None:
        raise PermanentGitError(f"base branch {base_branch!r} does not exist in the repository")
    local = git.rev(f"refs/heads/{branch}")
    remote = git.rev(f"refs/remotes/origin/{branch}")
    if local and remote and local != remote and git.ok("merge-base", "--is-ancestor", local, remote):
        start, started_from = remote, "remote"  # pushed work ahead of ours: take it
    elif local:
        start, started_from = local, "local"
    elif remote:
        start, started_from = remote, "remote"
    else:
        start, started_from = base, "base"
    git.run("checkout", "--force", "--quiet", "--no-track", "-B", branch, start, "--")
    git.run("reset", "--hard", "--quiet", start)
    git.run("clean", "-d", "--force", "--quiet")
    commit = git.output("rev-parse", "HEAD")
    return CheckoutResult(branch=branch, base_branch=base_branch, commit=commit,
                          started_from=started_from, cloned=created)
