"""A hostile agent end to end (#16): every trick of the issue from inside a run, through the real processes.

tests/support/hostile_agent.py is the agent of task 1 of a service: it plants
git configuration of every kind in its worktree's git directories (each
planted command would create a marker file), rewrites URLs to an attacker's
server, reads every process's /proc/<pid>/environ, writes outside its
worktree, prints secrets raw, in base64, hex, URL-encoded and split, puts them
in outputs.json, and floods its output. Task 2 of the same service is then
prepared in the same clone (the agent is benign for it). Twice:

- through `orchestrator up` (the local runner; `up` as root, so agents run as
  their own user), against an HTTPS git server that wants `GITHUB_TOKEN`;
- through the Kubernetes runner (gunicorn, a Celery worker, the watcher) on
  the API emulator, with tests/support/kubelet.py running each Job's
  container as a process from the Job's own spec.

Asserted: no planted command ever ran in a worker (the marker never appears),
nothing reached the attacker's server (no token, no stolen value), no secret
in any encoding the agent used appears in a process log, an API answer, the
store or what went to GitHub, and the next task of the service succeeds.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.cli import children
from orchestrator.kube import jobs as kjobs
from tests.cli.up_process import Up
from tests.support.kube_cluster import write_kubeconfig
from tests.support.attacker_server import AttackerServer
from tests.support.fake_github import FakeGitHub
from tests.support.faults import API_TOKEN, SECOND_API_TOKEN, SECRETS, FaultStack, assert_no_secret_leaked
from tests.support.git_server import PUBLIC_BASE, GitHttpServer
from tests.support.kube_emulator import KubeEmulator
from tests.support.stack import decode_answer, send_json
from tests.support.kubelet import ProcessKubelet
from tests.support.stack import REPO_ROOT
from tests.support.wait import wait_for

AGENT = REPO_ROOT / "tests" / "support" / "hostile_agent.py"
SERVICE = "shop"
REPOSITORY = {"url": f"{PUBLIC_BASE}acme/shop.git", "branch": "main"}
ENDED = {"Succeeded", "Failed", "Cancelled"}


def forms(secret: str) -> list[str]:
    """The encodings the hostile agent prints (the split one is checked by the masking tests)."""
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        raw.hex(),
        urllib.parse.quote(secret, safe=""),
    ]


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    return [form for secret in secrets for form in forms(secret) if form in text]


def redis_text(client: redis.Redis) -> str:
    """Every value of every key of the store, as one text (what an agent's output could have reached)."""
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key).decode(errors="replace"))
        elif kind == b"hash":
            parts += [v.decode(errors="replace") for v in client.hvals(key)]
        elif kind == b"list":
            parts += [v.decode(errors="replace") for v in client.lrange(key, 0, -1)]
        elif kind == b"set":
            parts += [v.decode(errors="replace") for v in client.smembers(key)]
        elif kind == b"zset":
            parts += [v.decode(errors="replace") for v in client.zrange(key, 0, -1)]
    return "\n".join(parts)


def task_body(task_id: int) -> dict[str, Any]:
    return {
        "id": task_id,
        "title": f"Task {task_id}",
        "description": "Change a file",
        "details": "Any change",
        "test_strategy": "none",
        "priority": "medium",
        "dependencies": [],
        "service_name": SERVICE,
        "agent_name": "claude",
        "repository": REPOSITORY,
        "markdown_files": [{"filename": "task.md", "content": f"# Task {task_id}\n", "file_type": "task"}],
    }


class World:
    """The git server (wants the token), the attacker's server, GitHub's stand-in and the marker."""

    def __init__(self, tmp: Path, token: str) -> None:
        self.git = GitHttpServer(tmp / "remotes", token)
        self.git.start()
        self.git.create_repository("acme/shop", tmp / "seed", branches={"main": {"README.md": "# shop\n"}})
        self.attacker = AttackerServer()
        self.attacker.start()
        self.github = FakeGitHub().start()
        self.marker = tmp / "planted-command-ran"

    def agent_args(self, *extra: str) -> str:
        return f"--marker {self.marker} --attacker {self.attacker.url} " + " ".join(extra)

    def env(self) -> dict[str, str]:
        return {
            **self.git.git_env(),
            "ORCHESTRATOR_GITHUB_API_URL": self.github.url,
            "ORCHESTRATOR_ALLOWED_GIT_HOSTS": "github.com,git.example.test",
            "ORCHESTRATOR_DELIVERY_BACKOFF_SECONDS": "0.5",
            "ORCHESTRATOR_GIT_TIMEOUT_SECONDS": "30",
        }

    def close(self) -> None:
        self.github.stop()
        self.attacker.stop()
        self.git.stop()

    def assert_nothing_obeyed_or_sent(self) -> None:
        assert not self.marker.exists(), "a command the agent planted ran in a worker"
        assert self.attacker.requests == [], f"something reached the attacker: {self.attacker.requests}"

    def github_text(self) -> str:
        return json.dumps([{"path": r.path, "body": r.body} for r in self.github.requests])


def http(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
    status, raw = send_json(base + path, token, method, body, timeout=60)
    text = raw.decode(errors="replace")
    answer = decode_answer(raw)
    return status, answer if not isinstance(answer, str) else None, text


def run_both_tasks(base: str, token: str, answers: list[str], timeout: float = 240) -> tuple[dict, dict]:
    """Task 1 (hostile) to its end, then task 2 of the same service; every answer is kept for the scan."""
    ended: list[dict] = []
    for task_id in (1, 2):
        status, body, text = http(base, token, "POST", "/api/v1/pm/tasks", task_body(task_id))
        answers.append(text)
        assert status == 202, text

        def end(task_id: int = task_id) -> dict | None:
            _status, task, text = http(base, token, "GET", f"/api/v1/pm/tasks/{SERVICE}/{task_id}")
            answers.append(text)
            return task if task and task.get("status") in ENDED else None

        ended.append(wait_for(end, f"task {task_id} to end", timeout=timeout, interval=0.5))
        for query in ("", "?format=raw", "?tail=50"):
            started = time.monotonic()
            answers.append(http(base, token, "GET", f"/api/v1/pm/tasks/{SERVICE}/{task_id}/logs{query}")[2])
            print(f"logs{query} of task {task_id}: {time.monotonic() - started:.1f} s, {len(answers[-1])} characters")
    return ended[0], ended[1]


def assert_tricks_were_tried(report: dict) -> None:
    tricks = report["tricks"]
    for name in (
        "common config",
        "config.worktree (common)",
        "hooks in .git/hooks",
        "objects/info/alternates",
        "info/attributes filter",
        "include.path file",
        "core.hooksPath dir",
        "worktree .git pointer",
    ):
        assert tricks.get(name) == "done", (name, tricks)  # planted: the worker had to withstand it
    assert report["stolen"] == [], report  # no other process's environment gave anything away


# Through `orchestrator up` (local runner) -------------------------------------------------------


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """Outside pytest's 0700 temporary root, so the agent user can reach its checkout and the script."""
    root = Path(tempfile.mkdtemp(prefix="orchestrator-hostile-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="`up` runs agents as their own user only as root")
def test_a_hostile_agent_under_orchestrator_up(base_env: dict[str, str], public_dir: Path, tmp_path: Path) -> None:
    token = "ghp_HOSTILEUP7f3a9cgithubtoken"
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-HOSTILEUP-anthropic-7f3a9c",
        "GITHUB_TOKEN": token,
        "GITHUB_WEBHOOK_SECRET": "whsec-HOSTILEUP-webhook-7f3a9c",
    }
    world = World(tmp_path, token)
    data_dir = public_dir / "data"
    workspaces = data_dir / "workspaces"
    script = public_dir / "hostile_agent.py"
    shutil.copy(AGENT, script)
    script.chmod(0o644)
    outside = [
        data_dir / "escaped",
        workspaces / "escaped",
        workspaces / SERVICE / "escaped",
        workspaces / SERVICE / ".clone" / "escaped",
        public_dir / "escaped",
        Path("/root/escaped"),
    ]
    args = world.agent_args(*(f"--outside {p}" for p in outside), "--huge 3000000")
    env = {
        k: v
        for k, v in {**base_env, **world.env(), **secrets}.items()
        if k not in ("ORCHESTRATOR_WORKSPACE_ROOT", "ORCHESTRATOR_REDIS_URL", "ORCHESTRATOR_LOCAL_AGENT_USER")
    }
    env.update(
        {
            "ORCHESTRATOR_DATA_DIR": str(data_dir),
            "ORCHESTRATOR_RUN_LOG_MAX_BYTES": "1000000",
            "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"/usr/bin/python3 {script} {args}",
        }
    )
    up = Up(env, tmp_path)
    answers: list[str] = []
    try:
        up.start()
        api_token = env["ORCHESTRATOR_API_TOKENS"]
        first, second = run_both_tasks(up.api_url, api_token, answers)
        store = redis.Redis(
            port=int(up.args[up.args.index("--redis-port") + 1]),
            password=(data_dir / children.REDIS_PASSWORD_FILE).read_text().strip(),
        )
        stored = redis_text(store)
        store.close()
    except BaseException:
        print(up.output(), up.logs(), sep="\n")
        raise
    finally:
        up.stop()
        world.close()
    try:
        report = json.loads((workspaces / SERVICE / "worktrees" / "1" / "hostile-report.json").read_text())
        assert_tricks_were_tried(report)
        assert report["environ_readable"] == 0 or report["stolen"] == []
        assert report["uid"] != 0
        world.assert_nothing_obeyed_or_sent()
        assert second["status"] == "Succeeded", second
        assert first["status"] in ENDED and (first["status"] == "Succeeded" or first["status_reason"]), first
        for path in outside:
            assert not path.exists(), f"the agent wrote outside its worktree: {path}"
        # The agent printed 3 MB: its run log stopped at the cap and says so.
        (log,) = [p for p in (data_dir / "runs").glob("*/output.log") if "HOSTILE " in p.read_text(errors="replace")]
        assert log.stat().st_size < 1_100_000 and "ORCHESTRATOR_RUN_LOG_MAX_BYTES" in log.read_text()[-400:]
        values = [
            *secrets.values(),
            env["ORCHESTRATOR_API_TOKENS"],
            (data_dir / children.REDIS_PASSWORD_FILE).read_text().strip(),
        ]
        assert leaks(stored, values) == []
        assert leaks("\n".join(answers), values) == []
        assert leaks(world.github_text(), values) == []
        for path in [*(data_dir / "logs").glob("*.log"), *(data_dir / "runs").rglob("*")]:
            if path.is_file():
                assert leaks(path.read_text(errors="replace"), values) == [], path
    except BaseException:
        print(up.output(), up.logs(), *[a for a in answers if "Traceback" in a or "HOSTILE" in a][:2], sep="\n")
        raise


# Through the Kubernetes runner -----------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a pod's own PID namespace needs root")
def test_a_hostile_agent_in_a_kubernetes_job(tmp_path: Path) -> None:
    world = World(tmp_path, SECRETS["GITHUB_TOKEN"])
    emulator = KubeEmulator()
    emulator.start()
    env = {
        **world.env(),
        "ORCHESTRATOR_RUNNER": "kubernetes",
        "ORCHESTRATOR_NAMESPACE": "default",
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", emulator.url)),
        "ORCHESTRATOR_AGENT_COMMAND": f"{sys.executable} {AGENT} {world.agent_args('--huge 200000')}",
    }
    stack = FaultStack(tmp_path / "stack", env=env)
    kubelet = ProcessKubelet(
        emulator,
        tmp_path / "stack" / "workspaces",
        {"anthropic-api-key": SECRETS["ANTHROPIC_API_KEY"], "github-token": SECRETS["GITHUB_TOKEN"]},
    )
    kubelet.start()
    answers: list[str] = []
    try:
        stack.up()
        first, second = run_both_tasks(stack.api_url, API_TOKEN, answers)
        client = redis.Redis.from_url(stack.redis.url)
        stored = redis_text(client)
        client.close()
        with emulator.cond:
            created = [obj for _rv, kind, type_, obj in emulator.state.events if kind == "jobs" and type_ == "ADDED"]
    except BaseException:
        print(stack.dump_logs())
        raise
    finally:
        kubelet.close()
        stack.down()
        emulator.stop()
        world.close()
    report = json.loads(
        (tmp_path / "stack" / "workspaces" / SERVICE / "worktrees" / "1" / "hostile-report.json").read_text()
    )
    assert_tricks_were_tried(report)
    assert report["own_secrets"] == 1  # ANTHROPIC_API_KEY, by secretKeyRef; GITHUB_TOKEN is not given to Jobs
    world.assert_nothing_obeyed_or_sent()
    assert second["status"] == "Succeeded", second
    assert first["status"] in ENDED and (first["status"] == "Succeeded" or first["status_reason"]), first
    assert len(created) == 2
    for job in created:  # a pod sees its own worktree and the clone's .git, nothing else of the volume
        (container,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "agent"]
        sub_paths = sorted(m.get("subPath", "") for m in container["volumeMounts"] if m["name"] != "tmp")
        task_id = job["metadata"]["labels"][kjobs.LABEL_TASK]
        assert sub_paths == [f"{SERVICE}/.clone/.git", f"{SERVICE}/worktrees/{task_id}"], sub_paths
    values = [*SECRETS.values(), API_TOKEN, SECOND_API_TOKEN]
    assert leaks(stored, values) == []
    assert leaks("\n".join(answers), values) == []
    assert leaks(world.github_text(), values) == []
    for path in stack.logs.glob("*.log"):
        assert leaks(path.read_text(errors="replace"), values) == [], path
    stack.responses.extend(answers)
    assert_no_secret_leaked(stack)
