"""docker-compose.yml run as compose wires it, without Docker: one task to Succeeded, once, logs over HTTP.

Each service of the file becomes a process group with the environment compose
gives it: the image's ENV (from the Dockerfile), then the service's
`environment` interpolated from a test "shell", with `redis:6379` pointed at a
redis-server of our own. Filesystems follow the file too: a named volume is
one host directory shared by every service that mounts it; everything else a
container writes (its /tmp, its working directory) is a directory of its own.
Where the machine allows it, each container also gets its own PID and UTS
namespace (`unshare`), so a pid written by one container means nothing in
another and each Celery worker has its own host name, as in Docker.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.support.entrypoints import REPO_ROOT
from tests.support.redis_server import free_port
from tests.support.stack import Process, Stack
from tests.test_dockerfile import _instructions

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
# What a PM task goes through: intake (api), admit and finish (coordination),
# the workspace, the launch (deploy) and the watcher. Events and Flower are not on its path.
SERVICES = ("api", "worker-coordination", "worker-workspace", "worker-deploy", "watcher")
MODULES = {"gunicorn": "gunicorn", "celery": "celery", "orchestrator": "orchestrator.cli"}
UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--uts", "--fork", "--kill-child"]
TOKEN = "compose-token"


def _namespaces() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run([*UNSHARE, "true"], capture_output=True,
                                                            timeout=10).returncode == 0


def interpolate(value: str, shell: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR:+alternative}."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, word = match.group(1), match.group(2), match.group(3) or ""
        current = shell.get(name, "")
        if op == ":-":
            return current or word
        if op == ":+":
            return word if current else ""
        return current
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\+)([^}]*))?\}", one, value)


def image_env() -> tuple[dict[str, str], str]:
    """ENV and WORKDIR of the Dockerfile's last stage."""
    env: dict[str, str] = {}
    workdir = "/"
    for keyword, args in _instructions((REPO_ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            env, workdir = {}, "/"
        elif keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
        elif keyword == "WORKDIR":
            workdir = args
    return env, workdir


class Container:
    """One service: where its paths land on this machine, and its environment."""

    def __init__(self, name: str, service: dict[str, Any], root: Path, shell: Mapping[str, str]):
        self.name = name
        self.own = root / "containers" / name  # the container's own filesystem
        self.mounts: dict[PurePosixPath, Path] = {}
        for volume in service.get("volumes", []):
            source, target = interpolate(volume, shell).split(":")[:2]
            if not source.startswith(("/", ".")):  # a named volume: shared by all who mount it
                self.mounts[PurePosixPath(target)] = root / "volumes" / source
        for path in self.mounts.values():
            path.mkdir(parents=True, exist_ok=True)
        env, workdir = image_env()
        for key, value in (service.get("environment") or {}).items():
            if value is None:  # passed through from the shell when set there
                if key in shell:
                    env[key] = shell[key]
            else:
                env[key] = interpolate(str(value), shell)
        self.cwd = self.host(workdir)
        self.cwd.mkdir(parents=True, exist_ok=True)
        for key, value in list(env.items()):
            if value.startswith("/") and (key == "HOME" or key.endswith(("_DIR", "_ROOT", "_FILE", "_PATH"))):
                env[key] = str(self.host(value))
        self.env = env

    def host(self, container_path: str) -> Path:
        path = PurePosixPath(container_path)
        for target in sorted(self.mounts, key=lambda p: len(p.parts), reverse=True):
            if path == target or target in path.parents:
                return self.mounts[target] / path.relative_to(target)
        return self.own / path.relative_to("/")


class ContainerProcess(Process):
    """A Process started in its container's working directory."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path, cwd: Path):
        super().__init__(name, args, env, log_dir)
        self.cwd = cwd

    def start(self) -> ContainerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.cwd)
        log.close()
        return self


class ComposeStack(Stack):
    def __init__(self, tmp: Path):
        super().__init__(tmp, token=TOKEN)
        self.root = tmp
        self.namespaces = _namespaces()
        self.containers: dict[str, Container] = {}
        # The "shell" compose reads: a token for the API, nothing else secret. The
        # built-in example agent, a few seconds late: the watcher (polling every
        # second from its own container) must judge it Running, not lost.
        agent = f"/bin/sh -c 'sleep 6 && exec {sys.executable} -m orchestrator.agents.example'"
        self.shell = {"ORCHESTRATOR_API_TOKENS": TOKEN, "ORCHESTRATOR_LOCAL_AGENT_COMMAND": agent}

    def start_service(self, name: str) -> Process:
        service = COMPOSE["services"][name]
        container = self.containers[name] = Container(name, service, self.root, self.shell)
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PYTHONPATH": str(REPO_ROOT)}
        env.update(container.env)
        redis_address = self.redis.url.split("//")[1].split("/")[0]
        env["ORCHESTRATOR_REDIS_URL"] = env["ORCHESTRATOR_REDIS_URL"].replace("redis:6379", redis_address)
        if "GUNICORN_BIND" in env:
            env["GUNICORN_BIND"] = f"127.0.0.1:{self.api_port}"
        if env.get("ORCHESTRATOR_METRICS_PORT", "0") != "0":
            # Each container has its own network namespace in compose, so all use 9100; here they share one.
            env["ORCHESTRATOR_METRICS_PORT"] = str(free_port())
        command = [interpolate(str(arg), self.shell) for arg in service["command"]]
        command = [str(container.host(arg)) if arg.startswith("/") else arg for arg in command]
        args = [sys.executable, "-m", MODULES[command[0]], *command[1:]]
        if self.namespaces:
            args = [*UNSHARE, "sh", "-c", 'hostname "$0" && exec "$@"', name, *args]
        proc = ContainerProcess(name, args, env, self.logs, container.cwd).start()
        self.processes[name] = proc
        return proc

    def data_dir(self, name: str) -> Path:
        """Where the service's ORCHESTRATOR_DATA_DIR lands on this machine (the default is relative)."""
        container = self.containers[name]
        return container.cwd / container.env.get("ORCHESTRATOR_DATA_DIR", ".orchestrator")

    def up_services(self) -> None:
        self.start_redis()
        for name in SERVICES:
            proc = self.start_service(name)
            if name.startswith("worker-"):
                deadline = time.monotonic() + 90
                while " ready." not in proc.log():
                    if not proc.alive or time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not start:\n{proc.log()[-3000:]}")
                    time.sleep(0.2)
        self.wait_http("/health")


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    stack = ComposeStack(tmp_path_factory.mktemp("compose"))
    try:
        stack.up_services()
        yield stack
    finally:
        stack.down()


def test_a_task_runs_once_to_succeeded_and_its_logs_are_read_through_the_api(compose_stack: ComposeStack) -> None:
    from tests.e2e.test_flow import task

    status, body = compose_stack.request("POST", "/api/v1/pm/tasks", task(1))
    assert status == 202, body
    done = compose_stack.wait_status("demo", 1, {"Succeeded", "Failed"}, timeout=240)
    assert done["status"] == "Succeeded", f"{done}\n{compose_stack.dump_logs()}"
    assert [run["phase"] for run in done["runs"]] == ["Succeeded"], "the task ran more than once"
    status, logs = compose_stack.request("GET", "/api/v1/pm/tasks/demo/1/logs")
    assert status == 200 and "example agent" in str(logs), logs
    # Exactly one agent ever started: one run directory, wherever the deploy worker keeps them.
    run_id = done["runs"][0]["run_id"]
    data_dirs = {name: compose_stack.data_dir(name) for name in SERVICES}
    assert sorted(p.name for p in (data_dirs["worker-deploy"] / "runs").iterdir()) == [run_id]
    # The API, the watcher and the coordination worker (it reads the log tail) see that same directory.
    assert len(set(data_dirs.values())) == 1, data_dirs


def test_each_worker_passes_its_compose_health_check(compose_stack: ComposeStack) -> None:
    """The check compose runs in each worker container passes on a worker that consumes."""
    for name in SERVICES:
        if not name.startswith("worker-"):
            continue
        check = COMPOSE["services"][name]["healthcheck"]["test"][1].partition(" || ")[0].split()
        container = compose_stack.containers[name]
        args = [str(container.host(arg)) if arg.startswith("/") else arg for arg in check[1:]]
        assert Path(args[args.index("--heartbeat-file") + 1]).is_file(), f"{name} wrote no heartbeat"
        probe = subprocess.run([sys.executable, "-m", MODULES[check[0]], *args], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60)
        assert probe.returncode == 0, f"{name}: {probe.stderr}"
