"""Shared pieces of the fault suites: a stack with recognisable secrets and fast recovery, and secret scans."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.redis_server import RedisServer
from tests.support.stack import Stack
from tests.support.wait import wait_for

# Recognisable values: any of them found in a log, a response, a file or a manifest is a leak.
SECRETS: dict[str, str] = {
    "ANTHROPIC_API_KEY": "sk-ant-FAULTSUITE-anthropic-7f3a9c",
    "GITHUB_TOKEN": "ghp_FAULTSUITEgithubtoken7f3a9c",
    "GITHUB_WEBHOOK_SECRET": "whsec-FAULTSUITE-webhook-7f3a9c",
}
API_TOKEN = "api-FAULTSUITE-token-7f3a9c"
SECOND_API_TOKEN = "api-FAULTSUITE-second-7f3a9c"
ALL_SECRETS: tuple[str, ...] = (*SECRETS.values(), API_TOKEN, SECOND_API_TOKEN)

# Recovery comes from the reconcile loop (every second, re-driving what sat 5 s),
# never from the broker's visibility timeout, which stays at its default of an hour.
FAST_RECOVERY: dict[str, str] = {
    "ORCHESTRATOR_RECONCILE_SECONDS": "1",
    "ORCHESTRATOR_STUCK_AFTER_SECONDS": "5",
    "ORCHESTRATOR_WATCHER_LEASE_SECONDS": "3",
    "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "1",
    "ORCHESTRATOR_MAX_ACTIVE_RUNS": "20",
    "ORCHESTRATOR_LOG_LEVEL": "DEBUG",
}
END_STATES = {"Succeeded", "Failed", "Cancelled"}


def task_body(task_id: int, service: str, **extra: Any) -> dict[str, Any]:
    """A valid submission."""
    return {
        "id": task_id, "title": f"Task {task_id}", "description": "Say hello", "details": "Print a greeting",
        "test_strategy": "it greets", "priority": "medium", "dependencies": [], "service_name": service,
        "agent_name": "claude",
        "markdown_files": [{"filename": "task.md", "content": f"# Task {task_id}\n\nGreet.", "file_type": "task"}],
        **extra,
    }


class FaultStack(Stack):
    """A Stack with the secrets configured and every response body kept for the secret scan."""

    def __init__(self, tmp: Path, *, env: Mapping[str, str] | None = None, redis: RedisServer | None = None):
        merged = {
            **SECRETS, **FAST_RECOVERY,
            "ORCHESTRATOR_API_TOKENS": f"{API_TOKEN},{SECOND_API_TOKEN}",
            # The built-in example agent, even though an Anthropic key is configured.
            "ORCHESTRATOR_LOCAL_AGENT_COMMAND": "python -m orchestrator.agents.example",
            "ORCHESTRATOR_ALLOWED_GIT_HOSTS": "github.com,git.example.test",
            # Nothing may reach the real GitHub; reports go to a port where nobody listens.
            "ORCHESTRATOR_GITHUB_API_URL": "http://127.0.0.1:9",
        }
        merged.update(env or {})
        super().__init__(tmp, token=API_TOKEN, env=merged, redis=redis)
        self.responses: list[str] = []
        self.hook_dir = tmp / "hooks"

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, answer = super().request(method, path, body, **kwargs)
        self.responses.append(answer if isinstance(answer, str) else json.dumps(answer))
        return status, answer

    def raw(self, method: str, path: str, data: bytes | None, headers: Mapping[str, str],
            timeout: float = 10) -> tuple[int, str]:
        """A request with exactly these bytes and headers (no default Authorization)."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        for key, value in headers.items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        self.responses.append(text)
        return status, text

    # Workers with a pause inside one step ---------------------------------------------

    def start_paused_worker(self, name: str, step: str, seconds: float = 120, **kwargs: Any):
        """A worker that pauses inside `step` (tests/support/step_hooks.py) the first time it gets there."""
        for marker in self.hook_dir.glob(f"{step}.reached"):
            marker.unlink()
        env = {"ORCHESTRATOR_TEST_STEP_DELAY": f"{step}={seconds}", "ORCHESTRATOR_TEST_HOOK_DIR": str(self.hook_dir)}
        env.update(kwargs.pop("extra_env", {}) or {})
        return self.start_worker(name, extra_env=env, include=["tests.support.step_hooks"], **kwargs)

    def wait_hook(self, step: str, timeout: float = 60) -> None:
        """Block until a paused worker reached the pause point inside `step`."""
        marker = self.hook_dir / f"{step}.reached"
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no worker reached the pause in {step}\n{self.dump_logs()}")
            time.sleep(0.05)

    # Reading the record -----------------------------------------------------------------

    def task(self, service: str, task_id: int) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/v1/pm/tasks/{service}/{task_id}")
        assert status == 200, body
        return body

    def wait_end(self, service: str, task_id: int, timeout: float = 90) -> dict[str, Any]:
        return self.wait_status(service, task_id, END_STATES, timeout=timeout)


# Kombu's restore of unacknowledged messages on a closed Redis connection (celery #8030, #8384,
# #10205): the one way a worker may die when Redis goes away; `up`, the chart and compose restart it.
KOMBU_RESTORE_CRASH = "Unrecoverable error: AttributeError(\"'NoneType' object has no attribute 'hostname'\")"


def survived_or_restarted(stack: Stack, name: str, pid: int, event: str) -> None:
    """Assert the process `name` is still `pid`, or died of Kombu's known crash only (then start it again)."""
    proc = stack.processes[name]
    if proc.alive and proc.proc is not None and proc.proc.pid == pid:
        return
    log = proc.log()
    errors = "\n".join(line for line in log.splitlines() if "ERROR" in line or "CRITICAL" in line or "rror:" in line)
    assert name.startswith("worker") and KOMBU_RESTORE_CRASH in log, f"{name} did not survive {event}:\n{errors[:6000]}"
    stack.start_worker(name)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it is truthy; fail with `what` after `timeout` seconds."""
    return wait_for(predicate, what, timeout=timeout, interval=interval)


def succeeded_count(task: Mapping[str, Any]) -> int:
    """How often the task's history records a move to Succeeded."""
    return sum(1 for entry in task["history"] if entry["to"] == "Succeeded")


# Secret scans -------------------------------------------------------------------------------

def leaks_in_text(text: str, secrets: Iterable[str] = ALL_SECRETS) -> list[str]:
    """The configured secret names whose value appears in `text`."""
    return [secret for secret in secrets if secret in text]


def leaks_in_tree(root: Path, secrets: Iterable[str] = ALL_SECRETS) -> dict[str, list[str]]:
    """Every file under `root` (links not followed) that contains a secret, with which."""
    found: dict[str, list[str]] = {}
    secrets = tuple(secrets)
    if not root.exists():
        return found
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        hits = [s for s in secrets if s.encode() in data]
        if hits:
            found[str(path)] = hits
    return found


def assert_no_secret_leaked(stack: FaultStack) -> None:
    """No log of any process, response body, workspace or run file holds a configured secret."""
    files = leaks_in_tree(stack.tmp)
    assert not files, f"secrets written to files: {files}"
    bodies = [text for text in stack.responses if leaks_in_text(text)]
    assert not bodies, f"secrets in response bodies: {bodies[:3]}"
