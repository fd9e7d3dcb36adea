"""The whole system as separate processes, driven over HTTP the way a user drives it.

gunicorn (the API), Celery workers, the watcher, and a redis-server of the
test's own, each a child process in its own process group so a test can kill
one of them (SIGKILL, SIGTERM) and start it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.redis_server import RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = ("events", "coordination", "workspace", "deploy")



def send_json(url: str, token: str, method: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
              timeout: float = 10) -> tuple[int, bytes]:
    """One API request with a bearer token and a JSON body: its status and raw answer (4xx/5xx included)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own local URL
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def decode_answer(raw: bytes) -> Any:
    """An answer's JSON, its text when it is not JSON, None when empty."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


class Process:
    """One child process with its own log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path):
        self.name, self.args, self.env = name, args, dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=REPO_ROOT)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if not self.proc:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
        self._reap_group()

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, no clean-up."""
        if self.proc:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            self._reap_group()

    def _reap_group(self) -> None:
        # Children of a killed parent (Celery's pool processes) share its group.
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Stack:
    """Redis + API + workers + watcher for one test."""

    def __init__(self, tmp: Path, *, token: str = "stack-token", env: Mapping[str, str] | None = None,
                 redis: RedisServer | None = None):
        self.tmp = tmp
        self.token = token
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis = redis or RedisServer(tmp / "redis", appendonly=True)
        self.api_port = free_port()
        self.processes: dict[str, Process] = {}
        base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        base.update({
            "ORCHESTRATOR_REDIS_URL": self.redis.url,
            "ORCHESTRATOR_RUNNER": "local",
            "ORCHESTRATOR_WORKSPACE_ROOT": str(tmp / "workspaces"),
            "ORCHESTRATOR_DATA_DIR": str(tmp / "data"),
            "ORCHESTRATOR_API_TOKENS": token,
            "GUNICORN_BIND": f"127.0.0.1:{self.api_port}",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
        })
        base.update(env or {})
        self.env = base

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # Processes --------------------------------------------------------------

    def start_redis(self) -> None:
        if self.redis.process is None:
            self.redis.start()

    def start_api(self) -> Process:
        proc = self._start("api", [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf",
                                   "api.wsgi:app"])
        self.wait_http("/health")
        return proc

    def start_worker(self, name: str = "worker", queues: Iterable[str] = ALL_QUEUES, concurrency: int = 2,
                     extra_env: Mapping[str, str] | None = None, include: Iterable[str] = ()) -> Process:
        """Start a Celery worker; `include` adds modules (test-only hooks such as tests.support.step_hooks)."""
        args = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", ",".join(queues),
                "-c", str(concurrency), "-n", f"{name}-{time.monotonic_ns()}@%h", "--without-gossip",
                "--without-mingle", "-l", "INFO"]
        if include:
            args += ["--include", ",".join(include)]
        # A restarted worker appends to the same log: look only at what this start wrote.
        log_path = self.logs / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        proc = self._start(name, args, extra_env)
        deadline = time.monotonic() + 60
        while " ready." not in proc.log()[offset:]:
            if not proc.alive or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{proc.log()[-3000:]}")
            time.sleep(0.1)
        return proc

    def start_watcher(self, name: str = "watcher", extra_env: Mapping[str, str] | None = None) -> Process:
        return self._start(name, [sys.executable, "-m", "orchestrator.cli", "watcher"], extra_env)

    def _start(self, name: str, args: list[str], extra_env: Mapping[str, str] | None = None) -> Process:
        env = dict(self.env)
        env.update(extra_env or {})
        old = self.processes.get(name)
        if old and old.alive:
            raise RuntimeError(f"{name} already runs")
        proc = Process(name, args, env, self.logs).start()
        self.processes[name] = proc
        return proc

    def up(self, workers: int = 1) -> Stack:
        self.start_redis()
        self.start_api()
        for i in range(workers):
            self.start_worker(f"worker{i}")
        self.start_watcher()
        return self

    def down(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.redis.stop()

    def dump_logs(self) -> str:
        return "\n".join(f"===== {name}\n{proc.log()[-4000:]}" for name, proc in self.processes.items())

    # HTTP -------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
                timeout: float = 10) -> tuple[int, Any]:
        status, raw = send_json(self.api_url + path, self.token, method, body, headers=headers, timeout=timeout)
        return status, decode_answer(raw)

    def wait_http(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = self.request("GET", path, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{path} did not answer 200:\n{self.dump_logs()}")

    def wait_status(self, service: str, task_id: int, statuses: Iterable[str], timeout: float = 120) -> dict:
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            try:
                status, body = self.request("GET", f"/api/v1/pm/tasks/{service}/{task_id}", timeout=5)
                if status == 200 and body["status"] in wanted:
                    return body
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{service}/{task_id} never reached {wanted}; last: {body}\n{self.dump_logs()}")
