"""The local runner: the agent as a detached process on this machine (laptops, tests, `orchestrator up`).

Same lifecycle as a Job: launch returns at once, the watcher polls status
files, cancel terminates the process group, logs stream a file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.model import is_reserved_env
from orchestrator.runners import agent_telemetry, agent_user
from orchestrator.runners.agent_user import AgentUser
from orchestrator.runners.base import FAILED, PENDING, RUNNING, SUCCEEDED, Lines, RunObservation, RunRequest
from orchestrator.runners.errors import LaunchFailed, LogsUnavailable
from orchestrator.runners.local_files import (
    kill_lost_agent,
    same_namespace,
    signal_group,
    supervisor_alive,
    supervisor_running,
    tail_lines,
)
from orchestrator.settings import Settings
from orchestrator.workspace.layout import CLONE_DIR

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
# Variables of the worker an agent may see; everything else (Redis URL, API tokens, GitHub token...) stays out.
PASSED_THROUGH = ("PATH", "HOME", "LANG")
CODE_ROOT = str(Path(__file__).resolve().parents[2])  # the built-in example agent is imported from here
START_GRACE_SECONDS = 60.0


def default_local_command(settings: Settings) -> tuple[str, ...]:
    """Claude Code when it can really run here, else the built-in example agent."""
    if settings.local_agent_command:
        return settings.local_agent_command
    if settings.anthropic_api_key and shutil.which("claude"):
        return settings.agent_command
    return (sys.executable, "-m", "orchestrator.agents.example")


class LocalRunner:
    """Runs agents as detached local processes; state lives in data_dir/runs/<run id>/."""

    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_dir / "runs"

    def run_dir(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"invalid run id {run_id!r}")
        return self.root / run_id

    def agent_user(self) -> AgentUser | None:
        """The user agents run as when it is not this process's own; None: as this process's user."""
        name = self.settings.local_agent_user
        if not name:
            return None
        user = agent_user.lookup(name)
        if user is None:
            raise LaunchFailed(
                f"the local agent user {name} (ORCHESTRATOR_LOCAL_AGENT_USER) does not exist; "
                f"create it (useradd --system {name}) or set ORCHESTRATOR_LOCAL_AGENT_USER empty"
            )
        if user.uid == os.geteuid():
            return None
        if os.geteuid() != 0:
            raise LaunchFailed(
                f"the worker runs as uid {os.geteuid()}, not root: it cannot run agents as {name} "
                "(ORCHESTRATOR_LOCAL_AGENT_USER)"
            )
        return user

    def environment(self, request: RunRequest, user: AgentUser | None = None) -> dict[str, str]:
        """The agent's environment: the contract, PATH/HOME/LANG, and the Anthropic key for Claude Code only."""
        env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
        if user is not None:
            env["HOME"] = user.home
        env["PYTHONPATH"] = CODE_ROOT
        for name, value in request.env.items():
            if is_reserved_env(name):
                raise LaunchFailed(f"task env may not set {name}")
            env[name] = str(value)
        env.update(
            {
                "ORCHESTRATOR_RUN_ID": request.run_id,
                "ORCHESTRATOR_SERVICE": request.service,
                "ORCHESTRATOR_TASK_ID": str(request.task_id),
                "ORCHESTRATOR_CONTEXT_VERSION": str(request.version),
                "ORCHESTRATOR_ATTEMPT": str(request.attempt),
                "ORCHESTRATOR_OUTPUT_DIR": str(
                    request.workspace_dir / (request.output_dir or f".orchestrator/runs/{request.run_id}")
                ),
            }
        )
        env.update(request.contract_env)
        if request.stage:
            env["ORCHESTRATOR_STAGE"] = request.stage
        if request.agent.model:
            env["ANTHROPIC_MODEL"] = request.agent.model
        telemetry = agent_telemetry.agent_env(request, self.settings)
        if telemetry and self.settings.otel_headers:
            telemetry[agent_telemetry.HEADERS_ENV] = self.settings.otel_headers
        env.update(telemetry)
        # Delivery (commit, push, pull request) is the orchestrator's: the agent never needs GITHUB_TOKEN.
        if self.settings.anthropic_api_key and is_claude_code(request.agent.command):
            env["ANTHROPIC_API_KEY"] = self.settings.anthropic_api_key
        return env

    def launch(self, request: RunRequest) -> str:
        """Start the supervisor (detached) unless this run was started already; return the run id."""
        run_dir = self.run_dir(request.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = run_dir / "spec.json"
        user = self.agent_user()
        env = self.environment(request, user)
        if spec_path.exists():
            if (run_dir / "status.json").exists() or supervisor_running(run_dir):
                return request.run_id  # adopted: a redelivered launch step
            # The spec was written but its supervisor never started (the step died in
            # between): start it now. Should two start, the supervisor lock keeps one.
        else:
            cwd = (
                request.workspace_dir / request.working_directory
                if request.working_directory
                else request.workspace_dir
            )
            if not cwd.is_dir():
                raise LaunchFailed(f"the run's working directory {cwd} does not exist")
            if user is not None:
                agent_user.hand_over(request.workspace_dir, user)  # its checkout, writable by it alone
                agent_user.let_through(self.settings.workspace_root, request.workspace_dir, user)
                shared_git = request.workspace_dir.parent.parent / CLONE_DIR / ".git"  # a worktree commits through it
                if (request.workspace_dir / ".git").is_file() and shared_git.is_dir() and not shared_git.is_symlink():
                    agent_user.hand_over(shared_git, user)
                    agent_user.let_through(self.settings.workspace_root, shared_git, user)
            timeout = max(
                1,
                min(
                    int(request.timeout_seconds or self.settings.default_timeout_seconds),
                    self.settings.max_timeout_seconds,
                ),
            )
            command = list(request.agent.command) + list(request.agent.args)
            tmp = run_dir / ".spec.tmp"
            tmp.write_text(
                json.dumps(
                    {
                        "command": command,
                        "cwd": str(cwd),
                        "timeout": timeout,
                        "log_max_bytes": self.settings.run_log_max_bytes,
                        "launched_at": time.time(),
                        "user": user.as_spec() if user else None,
                    }
                )
            )
            os.replace(tmp, spec_path)
        supervisor_env = dict(env)  # passed on to the agent as it is: PYTHONPATH is our code root only
        # The supervisor forks and its parent exits at once: this wait is milliseconds.
        subprocess.run(
            [sys.executable, "-m", "orchestrator.runners.local_supervisor", str(run_dir)],
            env=supervisor_env,
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return request.run_id

    def find(self, request: RunRequest) -> str | None:
        """The run id when its supervisor started already (status written or still running), else None."""
        run_dir = self.run_dir(request.run_id)
        if not run_dir.is_dir():
            return None
        if (run_dir / "status.json").exists() or supervisor_running(run_dir):
            return request.run_id
        return None

    def _status(self, run_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir(run_id) / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def observe(self, run_id: str) -> RunObservation | None:
        """The run's state from its status file; None when it never existed or was swept."""
        run_dir = self.run_dir(run_id)
        status = self._status(run_id)
        if status is None:
            spec = run_dir / "spec.json"
            if not spec.exists():
                return None
            launched = json.loads(spec.read_text()).get("launched_at", 0)
            if time.time() - launched > START_GRACE_SECONDS:
                return RunObservation(
                    run_id, FAILED, reason="the local supervisor never started", finished_at=time.time(), retryable=True
                )
            return RunObservation(run_id, PENDING, reason="starting")
        phase = status.get("phase")
        if phase == "Running" and not supervisor_alive(run_dir, status):
            # It may have written its outcome and exited since the read above: only a status still
            # Running after the supervisor is gone means it died without one.
            status = self._status(run_id) or status
            phase = status.get("phase")
            if phase == "Running":
                # It died without writing an outcome (machine restart, SIGKILL); its agent must not outlive it.
                if same_namespace(status):
                    kill_lost_agent(int(status.get("agent_pgid") or 0), run_id)
                return RunObservation(
                    run_id,
                    FAILED,
                    reason="the local run was lost (its supervisor died)",
                    started_at=status.get("started_at"),
                    finished_at=time.time(),
                    retryable=True,
                )
        if phase not in {PENDING, RUNNING, SUCCEEDED, FAILED}:
            phase = FAILED
        return RunObservation(
            run_id,
            phase,
            reason=status.get("reason", phase),
            exit_code=status.get("exit_code"),
            started_at=status.get("started_at"),
            finished_at=status.get("finished_at"),
        )

    def observe_all(self) -> dict[str, RunObservation]:
        """Observations of every run with a directory."""
        found: dict[str, RunObservation] = {}
        if not self.root.is_dir():
            return found
        for entry in self.root.iterdir():
            if entry.is_dir() and RUN_ID.match(entry.name):
                obs = self.observe(entry.name)
                if obs is not None:
                    found[entry.name] = obs
        return found

    def cancel(self, run_id: str, *, wait: float = 10.0) -> None:
        """Terminate the supervisor and the agent's process group; a finished run is left alone."""
        run_dir = self.run_dir(run_id)
        deadline = time.monotonic() + 3
        status = self._status(run_id)
        while status is None and (run_dir / "spec.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # launched a moment ago: the supervisor is starting
            status = self._status(run_id)
        if status is None or status.get("phase") != "Running":
            return
        pid, agent = int(status["pid"]), int(status.get("agent_pgid") or 0)
        from orchestrator.runners.local_supervisor import CANCEL_FILE

        local = same_namespace(status)
        if local:
            signal_group(pid, signal.SIGTERM)
        else:
            # Its pids are not ours to signal (another container): the supervisor polls for this file.
            (run_dir / CANCEL_FILE).touch()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            current = self._status(run_id) or {}
            if current.get("phase") != "Running":
                return
            time.sleep(0.05)
        for group in (agent, pid) if local else ():
            if group:
                signal_group(group, signal.SIGKILL)
        from orchestrator.runners.local_supervisor import write_status

        write_status(
            run_dir,
            phase=FAILED,
            exit_code=-9,
            reason="Cancelled",
            started_at=status.get("started_at"),
            finished_at=time.time(),
            pid=pid,
        )

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Lines of the run's output file; with `follow`, until the run ends."""
        run_dir = self.run_dir(run_id)
        if not (run_dir / "spec.json").exists():
            raise LogsUnavailable(f"run {run_id} has no local output (never launched here, or swept)")
        stop = threading.Event()
        return Lines(self._follow(run_id, run_dir / "output.log", follow, tail, stop), stop.set)

    def _follow(self, run_id: str, path: Path, follow: bool, tail: int | None, stop: threading.Event) -> Iterator[str]:
        while not path.exists():
            if not follow:
                raise LogsUnavailable(f"run {run_id} has written no output yet")
            status = self._status(run_id)
            if status and status.get("phase") in {SUCCEEDED, FAILED}:
                return
            if stop.wait(0.1):
                return
        with open(path, "rb") as handle:
            if tail is not None:
                for line in tail_lines(handle, tail):
                    yield line.decode("utf-8", errors="replace")
            buffer = b""
            while True:
                chunk = handle.read(65536)
                if chunk:
                    # One split a chunk: splitting off a line at a time copies the rest each time.
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace")
                    continue
                if not follow:
                    break
                status = self._status(run_id) or {}
                if status.get("phase") in {SUCCEEDED, FAILED}:
                    rest = handle.read()
                    if rest:
                        buffer += rest
                        continue
                    break
                if stop.wait(0.1):
                    return
            if buffer:
                yield buffer.decode("utf-8", errors="replace")

    def tracker(self, on_change: Callable[[str], None], *, watch_timeout: int = 60) -> LocalTracker:
        """Status files read on every poll (nothing to stream)."""
        return LocalTracker(self)

    def sweep(self, older_than: float) -> list[str]:
        """Remove directories of finished runs that ended more than `older_than` seconds ago."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - older_than
        for entry in self.root.iterdir():
            status = self._status(entry.name) if RUN_ID.match(entry.name) else None
            if status and status.get("phase") in {SUCCEEDED, FAILED} and (status.get("finished_at") or 0) < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed


class LocalTracker:
    """The local runner's `Tracker`: status files read on every poll, no stream."""

    streams: tuple[str, ...] = ()
    stream_stop_seconds = 0.0

    def __init__(self, runner: LocalRunner) -> None:
        self.runner = runner
        # Status files are cheap to read: poll often, so a local run's end is seen within a second.
        self.poll_seconds = min(runner.settings.reconcile_seconds, 1.0)

    def relist(self) -> None:
        pass  # every observation reads the files afresh

    def observations(self, run_ids: Iterable[str]) -> dict[str, RunObservation]:
        return self.runner.observe_all()  # every run's status file at once

    def observation(self, run_id: str) -> RunObservation | None:
        return self.runner.observe(run_id)

    def still_running(self, run_id: str) -> bool:
        return False  # a local run's end is its process's end, never inferred while it runs

    def end_lags(self, run_id: str) -> bool:
        return False  # the status file carries the end and its cause together

    def stream(self, name: str, stop: threading.Event) -> None:
        pass

    def sweep(self, older_than: float) -> list[str]:
        return self.runner.sweep(older_than)


def is_claude_code(command: tuple[str, ...] | list[str]) -> bool:
    """True when the agent's program is Claude Code (`claude`), the one agent that needs ANTHROPIC_API_KEY."""
    return bool(command) and os.path.basename(command[0]) == "claude"
