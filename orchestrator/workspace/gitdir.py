"""The checkout's `.git`, made the worker's own again before git runs there, and the task's branch checked out.

An agent of an earlier run had write access to the checkout, `.git/` included
(see orchestrator/workspace/git.py for the rules every git call follows). Here:
`.git/config` rewritten from a template (`reset_git_dir`), the files git would
read beside it removed, a `.git` with symbolic links refused (`linked_paths`),
each worktree's metadata rewritten (`harden_worktrees`), and the credential
helper pointed at the task repository's own origin (`credential_origin`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.workspace.files import atomic_write, remove_path
from orchestrator.workspace.git import (
    _FILESYSTEM_SETTINGS,
    FETCH_REFSPEC,
    PLANTABLE_PATHS,
    Git,
    PermanentGitError,
    WrongRemote,
    normalize_url,
    scrub,
)

log = logging.getLogger("orchestrator.workspace.git")


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
    """Values read from `.git/config` alone: no includes, no other file. Nothing found: [].

    `--git-dir` names no repository: run in the checkout, git would first set up the
    repository there and read its config with its includes (--no-includes covers only
    the read asked for), so a circular include an agent planted failed the run and an
    included FIFO held it until the git timeout.
    """
    path = str(git.directory / ".git" / "config")
    result = git.run(f"--git-dir={os.devnull}", "config", "--file", path, "--no-includes", *args, check=False)
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
        if (
            relpath == "hooks"
            and path.is_dir()
            and not path.is_symlink()
            and all(
                entry.name.endswith(".sample") and entry.is_file() and not entry.is_symlink()
                for entry in path.iterdir()
            )
        ):
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
                found += [
                    str(Path(root, name).relative_to(git_dir))
                    for name in dirs + files
                    if os.path.islink(os.path.join(root, name))
                ]
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
            raise WrongRemote(
                "the service directory holds a git checkout without an origin remote; refusing to reuse it"
            )
        reset_git_dir(git, url)
        return True
    if len(urls) > 1 or normalize_url(urls[0]) != normalize_url(url):
        shown = scrub(urls[0], git.secrets)
        raise WrongRemote(
            f"the service directory holds a checkout of another repository ({shown}); refusing to reuse it"
        )
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
        raise PermanentGitError(
            "the worktree's metadata is gone from the shared clone; its next preparation rebuilds the worktree"
        )
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


def start_point(git: Git, branch: str, base: str) -> tuple[str, str]:
    """Where the task branch starts: (commit, "remote" | "local" | "base").

    Pushed work ahead of the local branch wins; else the local branch, the
    remote one, or the base for a branch that exists nowhere yet.
    """
    local = git.rev(f"refs/heads/{branch}")
    remote = git.rev(f"refs/remotes/origin/{branch}")
    if local and remote and local != remote and git.ok("merge-base", "--is-ancestor", local, remote):
        return remote, "remote"
    if local:
        return local, "local"
    if remote:
        return remote, "remote"
    return base, "base"
