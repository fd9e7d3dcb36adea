"""`orchestrator up` as a user runs it: a subprocess, its banner, a second `up`, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator import heartbeat as hb
from orchestrator.cli import children, localstate, processes, stack
from orchestrator.cli.errors import EXIT_CONFLICT
from tests.cli.up_process import alive, cli
from tests.support.redis_server import free_port
from tests.support.wait import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_up_starts_everything_refuses_a_second_and_leaves_nothing_on_ctrl_c(up_factory, tmp_path: Path) -> None:
    # No Redis answers at the configured URL: `up` starts its own redis-server.
    # No token configured: `up` generates one and keeps it in the data dir.
    up = up_factory(env={"ORCHESTRATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                         "ORCHESTRATOR_API_TOKENS": None})
    up.start()
    banner = up.output()
    data_dir = Path(up.env["ORCHESTRATOR_DATA_DIR"])
    token = localstate.read_token(data_dir)
    assert token and f"API token  {token}" in banner
    assert (data_dir / localstate.TOKEN_FILE).stat().st_mode & 0o077 == 0
    assert f"API        {up.api_url}" in banner and "redis-server started here" in banner
    assert f"console    {up.api_url}/" in banner
    assert (data_dir / children.SESSION_SECRET_FILE).stat().st_mode & 0o077 == 0

    # The PM commands find the local stack and its token by themselves.
    env = {k: v for k, v in up.env.items() if k not in ("ORCHESTRATOR_API_URL", "ORCHESTRATOR_API_TOKEN")}
    health = cli(env, "health")
    assert health.returncode == 0, health.stderr
    assert f"API {up.api_url}: alive" in health.stdout and "ready" in health.stdout

    second = cli(up.env, "up", "--api-port", str(free_port()))
    assert second.returncode == EXIT_CONFLICT
    assert f"orchestrator up is already running from {data_dir} (pid {up.proc.pid})" in second.stderr

    pids = processes.descendants(up.proc.pid)
    assert len(pids) >= 4  # redis, gunicorn master and workers, celery and its pool
    assert up.interrupt() == 0
    assert "stopped." in up.output()
    assert [pid for pid in pids if alive(pid)] == []
    assert localstate.running_stack(data_dir) is None


def test_port_in_use_is_a_conflict(base_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cli(base_env, "up", "--api-port", str(port))
    assert result.returncode == EXIT_CONFLICT
    assert f"port {port} for the API is in use by another program; choose another with --api-port" in result.stderr


ORPHAN_SCRIPT = """
import subprocess, sys, time
from pathlib import Path
from orchestrator.cli import processes, stack
assert processes.become_subreaper()
s = processes.Stack(Path(sys.argv[1]))
# A child that starts a grandchild in its own session (as a local runner does) and exits.
s.start("parent", [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)'], start_new_session=True); print(p.pid, flush=True)"], {})
time.sleep(0.2)
deadline = time.monotonic() + 20
while not (Path(sys.argv[1]) / "parent.log").read_text().strip() and time.monotonic() < deadline:
    time.sleep(0.05)
orphan = int((Path(sys.argv[1]) / "parent.log").read_text().split()[0])
# The parent printed the pid before it exited: adoption happens when it is gone.
deadline = time.monotonic() + 20
while orphan not in processes.child_pids(__import__("os").getpid()) and time.monotonic() < deadline:
    time.sleep(0.05)
print(orphan, orphan in processes.child_pids(__import__("os").getpid()), flush=True)
s.stop(timeout=5)
"""


def test_stop_sweeps_orphans_re_parented_to_up(tmp_path: Path, base_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path)], env=base_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    orphan, adopted = result.stdout.split()
    assert adopted == "True"  # the subreaper adopted the grandchild when its parent exited
    assert not alive(int(orphan))


def test_descendants() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import subprocess,sys,time; "
                             "subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)']); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while len(processes.descendants(proc.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes.descendants(proc.pid)) == 1
        assert proc.pid in processes.child_pids(os.getpid())
    finally:
        for pid in processes.descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_child_env_defaults(settings) -> None:
    env = stack.child_env(settings.replace(api_tokens=()), "redis://127.0.0.1:1/0", "tok", "127.0.0.1:1")
    assert env["ORCHESTRATOR_API_TOKENS"] == "tok"
    assert env["ORCHESTRATOR_RUNNER"] == "local" and "FLOWER_UNAUTHENTICATED_API" not in env
    assert env["ORCHESTRATOR_REDIS_URL"] == "redis://127.0.0.1:1/0"
    configured = stack.child_env(settings, "redis://x:1/0", "tok", "127.0.0.1:1")
    assert configured["ORCHESTRATOR_API_TOKENS"] == os.environ["ORCHESTRATOR_API_TOKENS"]


def test_without_redis_server_up_uses_an_in_memory_redis_and_warns(up_factory, tmp_path: Path) -> None:
    # A PATH without redis-server (the interpreter is called by its full path anyway).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    up = up_factory(env={"ORCHESTRATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "PATH": str(bin_dir)})
    up.start()
    output = up.output()
    assert "warning: no Redis answers at ORCHESTRATOR_REDIS_URL and redis-server is not installed" in output
    assert "nothing will persist" in output and "in-memory fakeredis" in output
    health = cli({**up.env, "ORCHESTRATOR_API_URL": up.api_url}, "health")
    assert health.returncode == 0, health.stdout + health.stderr
    children = processes.descendants(up.proc.pid)
    assert up.interrupt() == 0
    assert [pid for pid in children if alive(pid)] == []


def test_children_stop_even_when_up_is_killed(up_factory) -> None:
    up = up_factory()
    up.start()
    children = processes.descendants(up.proc.pid)
    assert children
    up.proc.kill()  # SIGKILL: no chance to clean up; the children's parent-death signal does it
    up.proc.wait()
    deadline = time.monotonic() + 60
    while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []


def test_child_env_keeps_one_console_session_secret(settings) -> None:
    first = stack.child_env(settings.replace(session_secret=""), "redis://x:1/0", "tok", "127.0.0.1:1")
    again = stack.child_env(settings.replace(session_secret=""), "redis://x:1/0", "tok", "127.0.0.1:1")
    secret_file = settings.data_dir / children.SESSION_SECRET_FILE
    kept = secret_file.read_text().strip()
    assert first["ORCHESTRATOR_SESSION_SECRET"] == again["ORCHESTRATOR_SESSION_SECRET"] == kept
    assert secret_file.stat().st_mode & 0o077 == 0
    configured = stack.child_env(settings.replace(session_secret="mine"), "redis://x:1/0", "tok", "127.0.0.1:1")
    assert configured.get("ORCHESTRATOR_SESSION_SECRET", "mine") == "mine"


def _child(up_pid: int, *words: str) -> int:
    """The direct child of `up` whose command line holds every word."""
    for pid in processes.child_pids(up_pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if all(word in cmdline for word in words):
            return pid
    raise AssertionError(f"no child of up runs {words}")


def test_up_starts_a_dead_worker_watcher_or_redis_again_instead_of_stopping(up_factory, tmp_path: Path) -> None:
    up = up_factory(env={"ORCHESTRATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                         "ORCHESTRATOR_LOCAL_AGENT_COMMAND": "python -m orchestrator.agents.example"})
    up.start()
    try:
        data_dir = Path(up.env["ORCHESTRATOR_DATA_DIR"])
        heartbeat_file = data_dir / children.WORKER_HEARTBEAT_FILE
        worker = _child(up.proc.pid, "celery", "worker", "--heartbeat-file")
        wait_for(lambda: (hb.read(heartbeat_file) or {}).get("pid") == worker, "the worker's heartbeat")
        # The worker as the broker restart left it, the watcher and Redis too: SIGKILL, no clean-up.
        for words in (("celery", "worker"), ("orchestrator.cli", "watcher"), ("redis-server",)):
            os.killpg(_child(up.proc.pid, *words), signal.SIGKILL)
        for name in ("worker", "watcher", "redis"):
            wait_for(lambda name=name: f"{name} started again" in up.output(), f"{name} started again", timeout=60)
        assert "exited with code -9; starting it again in" in up.output()
        assert up.proc.poll() is None
        wait_for(lambda: (hb.read(heartbeat_file) or {}).get("pid") not in (None, worker), "the new worker's beat",
                 timeout=60)
        # The restarted pieces work together: a submission runs to its end.
        env = {k: v for k, v in up.env.items() if k not in ("ORCHESTRATOR_API_URL", "ORCHESTRATOR_API_TOKEN")}
        submitted = cli(env, "task", "submit", "--task-json", str(EXAMPLES / "tasks.json"), "--task-id", "1",
                        "--service", "demo", "--agent", "claude")
        assert submitted.returncode == 0, submitted.stderr
        watched = subprocess.run([sys.executable, "-m", "orchestrator.cli", "task", "watch", "demo/1",
                                  "--interval", "0.5"], env=env, capture_output=True, text=True, timeout=180)
        assert watched.stdout.splitlines()[-1].split()[2] == "Succeeded", watched.stdout + up.logs()
    except BaseException:
        print(up.output(), up.logs(), sep="\n")
        raise
    assert up.interrupt() == 0


def test_a_redis_of_ups_own_drops_configured_sentinels(settings, monkeypatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_REDIS_SENTINELS", "127.0.0.1:1")
    sentinel = settings.replace(redis_sentinels=(("127.0.0.1", 1),))
    # Sentinels that do not answer: `up` starts a Redis of its own, and its children must not ask them.
    assert not children.sentinel_master_answers(sentinel)
    own = stack.child_env(sentinel, "redis://127.0.0.1:2/0", "tok", "127.0.0.1:1")
    assert "ORCHESTRATOR_REDIS_SENTINELS" not in own and own["ORCHESTRATOR_REDIS_URL"] == "redis://127.0.0.1:2/0"
    kept = stack.child_env(sentinel, sentinel.redis_url, "tok", "127.0.0.1:1")
    assert kept["ORCHESTRATOR_REDIS_SENTINELS"] == "127.0.0.1:1"
