"""Local agents as a dedicated unprivileged user (finding 3 of issue #16).

The worker holds the stack's secrets in its environment and data directory; an
agent running as the worker's user reads them all. Run as another user, it
cannot, and still works in its checkout. Needs root (this machine runs tests as root).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.runners import agent_user
from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from tests.support.wait import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

USER = agent_user.DEFAULT_USER
PROBE = r"""
import errno, json, os, sys
paths = json.loads(sys.argv[1])
seen = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "env": sorted(os.environ)}
for name, path in paths.items():
    try:
        with open(path, "rb") as handle:
            handle.read()
        seen[name] = "read"
    except OSError as exc:
        seen[name] = errno.errorcode.get(exc.errno, str(exc.errno))
with open("written-by-the-agent.txt", "w") as handle:
    handle.write("ok\n")
print(json.dumps(seen))
"""


@pytest.fixture
def public_root() -> Iterator[Path]:
    """A directory outside pytest's 0700 temporary root, enterable by the agent user."""
    root = Path(tempfile.mkdtemp(prefix="orchestrator-agent-test-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_agent_runs_as_its_user_and_cannot_read_the_workers_secrets(settings: Settings, public_root: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    user = agent_user.ensure(USER)
    monkeypatch.setenv("SOME_WORKER_SECRET", "s3cret")  # this process plays the worker
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    token_file = data_dir / "api-token"
    token_file.write_text("the-api-token\n")
    token_file.chmod(0o600)
    workspace = public_root / "workspaces" / "billing"
    workspace.mkdir(parents=True)
    (public_root / "workspaces").chmod(0o711)
    (workspace / "CLAUDE.md").write_text("# brief\n")  # written by the (root) worker before the launch
    probe = public_root / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o644)
    paths = {"worker_environ": f"/proc/{os.getpid()}/environ", "token": str(token_file),
             "data_dir_listing": str(data_dir / "runs")}
    runner = LocalRunner(settings.replace(local_agent_user=USER, anthropic_api_key="sk-secret"))
    req = RunRequest(run_id="r-user", service="billing", task_id=1, version=1, attempt=1,
                     agent=AgentSpec(name="claude", image="", command=("/usr/bin/python3", str(probe),
                                                                         json.dumps(paths))),
                     workspace_dir=workspace, env={}, timeout_seconds=60)
    try:
        runner.launch(req)
        obs = wait_for(lambda: (o := runner.observe("r-user")) and o.phase in ("Succeeded", "Failed") and o)
        output = list(runner.logs("r-user"))
        assert obs.phase == "Succeeded", output
    finally:
        runner.cancel("r-user", wait=3)
    seen = json.loads(output[-1])
    assert (seen["uid"], seen["gid"], seen["groups"]) == (user.uid, user.gid, [])
    assert seen["worker_environ"] == "EACCES" and seen["token"] == "EACCES"
    assert seen["data_dir_listing"] in ("EACCES", "EISDIR")  # a directory: at best not a readable file
    assert "SOME_WORKER_SECRET" not in seen["env"] and "ANTHROPIC_API_KEY" not in seen["env"]
    written = workspace / "written-by-the-agent.txt"
    assert written.read_text() == "ok\n" and written.stat().st_uid == user.uid
    assert (workspace / "CLAUDE.md").stat().st_uid == user.uid  # the checkout was handed over


def test_a_planted_link_is_not_followed_when_the_checkout_is_handed_over(public_root: Path) -> None:
    user = agent_user.ensure(USER)
    secret = public_root / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    checkout = public_root / "checkout"
    checkout.mkdir()
    (checkout / "link").symlink_to(secret)  # what an earlier run may leave behind
    agent_user.hand_over(checkout, user)
    assert secret.stat().st_uid == 0 and (checkout / "link").lstat().st_uid == user.uid


def test_an_unknown_agent_user_refuses_the_launch(settings: Settings) -> None:
    from orchestrator.runners.errors import LaunchFailed

    runner = LocalRunner(settings.replace(local_agent_user="no-such-user-here"))
    with pytest.raises(LaunchFailed, match="does not exist"):
        runner.agent_user()


def test_reachability(public_root: Path) -> None:
    user = agent_user.ensure(USER)
    closed = public_root / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    assert agent_user.unreachable(closed / "inner", user) == closed
    assert agent_user.unreachable(public_root, user) is None


def test_the_agent_reaches_its_checkout_and_its_clone_by_absolute_path(public_root: Path) -> None:
    """Found by the hostile-agent suite: under `up`'s umask a service's directories were 0700 root,
    so an agent could write in its checkout only through relative paths and its git found no clone."""
    user = agent_user.ensure(USER)
    root = public_root / "workspaces"
    checkout, git_dir, other = root / "shop" / "worktrees" / "1", root / "shop" / ".clone" / ".git", root / "other"
    for path in (checkout, git_dir, other):
        path.mkdir(parents=True)
    for path in (root, root / "shop", root / "shop" / "worktrees", root / "shop" / ".clone", other):
        path.chmod(0o700)
    agent_user.hand_over(checkout, user)
    agent_user.let_through(root, checkout, user)
    agent_user.hand_over(git_dir, user)
    agent_user.let_through(root, git_dir, user)
    assert agent_user.unreachable(checkout / "file.py", user) is None
    assert agent_user.unreachable(git_dir / "config", user) is None
    assert agent_user.unreachable(other / "file", user) == other  # another service stays closed
    assert (root / "shop").stat().st_mode & 0o777 == 0o710  # enter, never list
    agent_user.let_through(root / "shop", other, user)  # not under it: nothing opened
    assert other.stat().st_mode & 0o777 == 0o700
