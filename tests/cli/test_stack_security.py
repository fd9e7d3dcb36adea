"""`orchestrator up` keeps other local processes and its own agents out (issue #16, findings 3, 10, 14).

Each test runs `up` as a real process, as tests/cli/test_stack.py does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.cli import children, localstate, processes
from orchestrator.runners import agent_user
from orchestrator.workspace.layout import checkout_dir
from tests.cli.up_process import Up, cli
from tests.support.redis_server import free_port

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.json")


def http_status(url: str, *, method: str = "GET", auth: tuple[str, str] | None = None, body: bytes | None = None,
                timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, method=method, data=body)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own local URL
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def wait_until(check, timeout: float = 120.0, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def task_json(env: dict[str, str], ref: str) -> dict:
    result = cli(env, "task", "status", ref, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else {}


def test_redis_flower_and_the_data_dir_are_closed_to_other_local_processes(up_factory) -> None:
    # No ORCHESTRATOR_REDIS_URL: `up` must not attach to whatever answers on 6379 (this machine's
    # shared Redis does); it starts its own, with a password.
    flower_port = free_port()
    up = up_factory("--flower", "--flower-port", str(flower_port), env={"ORCHESTRATOR_REDIS_URL": None})
    up.start()
    data_dir = Path(up.env["ORCHESTRATOR_DATA_DIR"])
    banner = up.output()
    try:
        assert "redis-server started here" in banner and "configured (ORCHESTRATOR_REDIS_URL)" not in banner
        redis_port = int(up.args[up.args.index("--redis-port") + 1])
        assert f"Redis      redis://:***@127.0.0.1:{redis_port}/0" in banner

        # Redis: a password, kept 0600 in the data dir, never printed nor on a command line.
        password_file = data_dir / children.REDIS_PASSWORD_FILE
        password = password_file.read_text().strip()
        assert len(password) >= 32 and password_file.stat().st_mode & 0o077 == 0
        assert password not in banner
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, socket_timeout=5).ping()
        assert redis.Redis(port=redis_port, password=password, socket_timeout=5).ping()
        for pid in processes.descendants(up.proc.pid):
            try:
                assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                pass

        # The data dir and what is in it: not readable by other users.
        assert data_dir.stat().st_mode & 0o077 in (0, 0o010)  # 0700, or 0710 for the agents' group
        for path in (data_dir / localstate.STATE_FILE, data_dir / "logs", data_dir / "runs",
                     data_dir / "redis"):
            assert path.stat().st_mode & 0o077 == 0, path

        # Flower: basic auth on pages and API, the password printed by `up` and kept 0600.
        flower = f"http://127.0.0.1:{flower_port}"
        flower_password = (data_dir / children.FLOWER_PASSWORD_FILE).read_text().strip()
        assert f"(user {children.FLOWER_USER}, password {flower_password})" in banner
        assert (data_dir / children.FLOWER_PASSWORD_FILE).stat().st_mode & 0o077 == 0
        auth = (children.FLOWER_USER, flower_password)
        wait_until(lambda: http_status(f"{flower}/api/workers", auth=auth) == 200, what="Flower")
        assert http_status(f"{flower}/api/workers") == 401
        assert http_status(f"{flower}/") == 401
        forged = json.dumps({"args": ["d-forged", "issues", {"action": "labeled"}]}).encode()
        assert http_status(f"{flower}/api/task/async-apply/orchestrator.handle_event", method="POST",
                           body=forged) == 401
        assert http_status(f"{flower}/api/workers", auth=(children.FLOWER_USER, "wrong")) == 401
    except BaseException:
        print(up.output(), up.logs(), sep="\n")
        raise
    finally:
        assert up.interrupt() == 0


PROBE = r"""
import errno, json, os, sys
from pathlib import Path

def parent(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])

# The stack: everything under `up`, our nearest ancestor started as `orchestrator.cli up`.
up = parent(os.getpid())
while b"orchestrator.cli\0up\0" not in Path(f"/proc/{up}/cmdline").read_bytes():
    up = parent(up)
tree, frontier = set(), [up]
while frontier:
    current = frontier.pop()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent(int(entry.name)) == current:
                    tree.add(int(entry.name))
                    frontier.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
tree.add(up)
mine = {os.getpid()}

def attempt(path):
    try:
        with open(path, "rb") as handle:
            handle.read()
        return "read"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

seen = {"uid": os.getuid(), "env": sorted(os.environ), "environ": {}, "files": {}}
for pid in sorted(tree - mine):
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
    except OSError:
        continue
    seen["environ"][command + f" [{pid}]"] = attempt(f"/proc/{pid}/environ")
for path in json.loads(sys.argv[1]):
    seen["files"][path] = attempt(path)
Path("written-by-the-agent.txt").write_text("ok\n")
print("PROBE " + json.dumps(seen))
"""


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A data directory outside pytest's 0700 temporary root, so the agent user can reach its checkout."""
    root = Path(tempfile.mkdtemp(prefix="orchestrator-up-test-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_agents_run_as_their_own_user_and_cannot_read_the_stacks_secrets(up_factory, public_dir: Path) -> None:
    data_dir = public_dir / "data"
    probe = public_dir / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o644)
    secrets = [str(data_dir / name) for name in (localstate.TOKEN_FILE, children.REDIS_PASSWORD_FILE,
                                                  localstate.STATE_FILE, "logs/worker.log", "redis/redis.conf")]
    up = up_factory(env={"ORCHESTRATOR_DATA_DIR": str(data_dir), "ORCHESTRATOR_WORKSPACE_ROOT": None,
                         "ORCHESTRATOR_API_TOKENS": None,
                         "ORCHESTRATOR_REDIS_URL": None, "ORCHESTRATOR_LOCAL_AGENT_USER": None,
                         "ANTHROPIC_API_KEY": "sk-ant-not-a-real-key", "GITHUB_TOKEN": "ghp_not_a_real_token",
                         "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"/usr/bin/python3 {probe} '{json.dumps(secrets)}'"})
    up.start()
    env = {**up.env, "ORCHESTRATOR_API_URL": up.api_url, "ORCHESTRATOR_API_TOKEN": localstate.read_token(data_dir)}
    try:
        assert f"agents     run as the user {agent_user.DEFAULT_USER}" in up.output()
        assert "NOT a security boundary" not in up.output()
        submitted = cli(env, "task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "demo",
                        "--agent", "claude")
        assert submitted.returncode == 0, submitted.stderr
        task = wait_until(lambda: (t := task_json(env, "demo/1")).get("status") in ("Succeeded", "Failed") and t,
                          timeout=180, what="the task to end")
        logs = cli(env, "task", "logs", "demo/1").stdout
        assert task["status"] == "Succeeded", logs
        seen = json.loads(next(line for line in logs.splitlines() if line.startswith("PROBE "))[6:])

        user = agent_user.lookup(agent_user.DEFAULT_USER)
        assert user is not None and seen["uid"] == user.uid
        assert any("celery" in command and "worker" in command for command in seen["environ"]), seen["environ"]
        assert {command: result for command, result in seen["environ"].items() if result != "EACCES"} == {}
        assert set(seen["files"].values()) == {"EACCES"}, seen["files"]
        for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "ORCHESTRATOR_REDIS_URL", "ORCHESTRATOR_API_TOKENS"):
            assert name not in seen["env"]
        written = checkout_dir(data_dir / "workspaces", "demo", 1) / "written-by-the-agent.txt"
        assert written.read_text() == "ok\n" and written.stat().st_uid == user.uid
    except BaseException:
        print(up.output(), up.logs(), sep="\n")
        raise
    finally:
        assert up.interrupt() == 0


def test_the_banner_says_when_the_local_runner_is_no_boundary(up_factory) -> None:
    up = up_factory(env={"ORCHESTRATOR_LOCAL_AGENT_USER": ""})
    up.start()
    try:
        assert "the local runner is NOT a security boundary" in up.output()
        assert "ORCHESTRATOR_LOCAL_AGENT_USER is empty" in up.output()
    finally:
        assert up.interrupt() == 0


SLEEPY_AGENT = ("if [ -e resumed-marker ]; then echo second run; exit 0; fi; "
                "touch resumed-marker; echo first run; sleep 300")


def test_runs_stopped_by_ctrl_c_are_retried_by_the_next_up(up_factory, tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"/bin/sh -c '{SLEEPY_AGENT}'",
           "ORCHESTRATOR_RETRY_BACKOFF_SECONDS": "1"}
    first = up_factory(env=env)
    first.start()
    cli_env = {**first.env, "ORCHESTRATOR_API_URL": first.api_url, "ORCHESTRATOR_API_TOKEN": "test-token"}
    try:
        submitted = cli(cli_env, "task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "demo",
                        "--agent", "claude")
        assert submitted.returncode == 0, submitted.stderr
        wait_until(lambda: "first run" in cli(cli_env, "task", "logs", "demo/1").stdout, timeout=180,
                   what="the agent to start")
    except BaseException:
        print(first.output(), first.logs(), sep="\n")
        raise
    finally:
        assert first.interrupt() == 0  # Ctrl-C while the run is going
    run_dirs = list((Path(first.env["ORCHESTRATOR_DATA_DIR"]) / "runs").iterdir())
    assert len(run_dirs) == 1
    assert json.loads((run_dirs[0] / "status.json").read_text())["phase"] == "Running"  # not Cancelled

    second = Up(first.env, tmp_path)
    try:
        second.start()
        cli_env["ORCHESTRATOR_API_URL"] = second.api_url
        task = wait_until(lambda: (t := task_json(cli_env, "demo/1")).get("status") in ("Succeeded", "Failed",
                                                                                           "Cancelled") and t,
                          timeout=240, what="the task to end")
        assert task["status"] == "Succeeded", task
        assert len(task["runs"]) == 2
        assert "lost" in task["runs"][0]["failure_reason"]
        assert "second run" in cli(cli_env, "task", "logs", "demo/1").stdout
    except BaseException:
        print(second.output(), second.logs(), sep="\n")
        raise
    finally:
        second.stop()
