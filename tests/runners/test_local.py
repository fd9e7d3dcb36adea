"""The local runner end to end: detached launch, logs follow, exit code, timeout, cancel kills the group."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import runs
from orchestrator.runners import get_runner
from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.runners.errors import LogsUnavailable
from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.watcher import Watcher
from tests.support.runs import Sent, launching_task
from tests.support.wait import wait_for


@pytest.fixture
def local(settings: Settings) -> Iterator[LocalRunner]:
    runner = LocalRunner(settings.replace(anthropic_api_key="sk-local-secret", github_token="ghp-local"))
    yield runner
    for run_id in runner.observe_all():  # never leave a process behind
        runner.cancel(run_id, wait=3)


def request(settings: Settings, run_id: str, command: list[str], *, timeout: int = 60, **changes) -> RunRequest:
    workspace = settings.workspace_root / "billing"
    workspace.mkdir(parents=True, exist_ok=True)
    base = dict(run_id=run_id, service="billing", task_id=1, version=1, attempt=1,
                agent=AgentSpec(name="claude", image="", command=tuple(command), model="claude-haiku"),
                workspace_dir=workspace, env={"GREETING": "hello"}, timeout_seconds=timeout)
    base.update(changes)
    return RunRequest(**base)


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_launch_returns_at_once_and_the_env_contract_holds(local: LocalRunner, settings: Settings) -> None:
    script = ('echo "greeting=$GREETING model=$ANTHROPIC_MODEL run=$ORCHESTRATOR_RUN_ID"; '
              'echo "key=${ANTHROPIC_API_KEY:-absent} redis=${ORCHESTRATOR_REDIS_URL:-absent}"; pwd; exit 3')
    started = time.monotonic()
    assert local.launch(request(settings, "r-env", sh(script))) == "r-env"
    assert time.monotonic() - started < 5  # returned before the agent ended (it is detached)
    obs = wait_for(lambda: (o := local.observe("r-env")) and o.phase == "Failed" and o)
    assert obs.exit_code == 3 and obs.reason == "Error: exit code 3" and obs.finished_at >= obs.started_at
    lines = list(local.logs("r-env"))
    assert lines[0] == "greeting=hello model=claude-haiku run=r-env"
    assert lines[1] == "key=absent redis=absent"  # not Claude Code: no key; our settings kept out
    assert lines[2] == str(settings.workspace_root / "billing")
    run_dir = settings.data_dir / "runs" / "r-env"
    assert "sk-local-secret" not in "".join(p.read_text() for p in run_dir.iterdir() if p.is_file())


def test_a_second_launch_adopts(local: LocalRunner, settings: Settings) -> None:
    req = request(settings, "r-twice", sh("echo once"))
    local.launch(req)
    local.launch(req)
    wait_for(lambda: (o := local.observe("r-twice")) and o.phase == "Succeeded")
    assert list(local.logs("r-twice")) == ["once"]


def test_a_launch_that_died_before_its_supervisor_started_is_completed_once(local: LocalRunner,
                                                                          settings: Settings) -> None:
    counter = settings.workspace_root / "starts"
    req = request(settings, "run-half", sh(f"echo started >> {counter}; sleep 0.3"))
    run_dir = local.run_dir("run-half")
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({  # what a launch step wrote before it was killed
        "command": list(req.agent.command), "cwd": str(req.workspace_dir), "timeout": 60,
        "launched_at": time.time()}))
    # Re-driven twice at once, then once more after the run started: one agent start.
    threads = [threading.Thread(target=local.launch, args=(req,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: (local.observe("run-half") or None) and local.observe("run-half").phase == "Succeeded")
    local.launch(req)
    time.sleep(0.5)
    assert counter.read_text().splitlines() == ["started"]
    assert local.observe("run-half").phase == "Succeeded"


def test_logs_follow_until_the_run_ends_and_tail(local: LocalRunner, settings: Settings) -> None:
    local.launch(request(settings, "r-follow", sh("for i in 1 2 3 4; do echo line $i; sleep 0.2; done")))
    assert list(local.logs("r-follow", follow=True)) == ["line 1", "line 2", "line 3", "line 4"]
    assert list(local.logs("r-follow", tail=2)) == ["line 3", "line 4"]
    with pytest.raises(LogsUnavailable):
        list(local.logs("never-launched"))


def test_the_timeout_stops_the_whole_group(local: LocalRunner, settings: Settings) -> None:
    # The agent starts a grandchild that would outlive a plain kill of the agent.
    local.launch(request(settings, "r-slow", sh("sleep 60 & echo child $!; wait"), timeout=1))
    child = int(wait_for(lambda: [line for line in local.logs("r-slow") if line.startswith("child")])[0].split()[1])
    obs = wait_for(lambda: (o := local.observe("r-slow")) and o.phase == "Failed" and o)
    assert obs.reason.startswith("DeadlineExceeded")
    wait_for(lambda: not alive(child), timeout=5)


def test_cancel_kills_the_process_group(local: LocalRunner, settings: Settings) -> None:
    local.launch(request(settings, "r-cancel", sh("sleep 60 & echo child $!; wait")))
    child = int(wait_for(lambda: [line for line in local.logs("r-cancel") if line.startswith("child")])[0].split()[1])
    status = wait_for(lambda: local._status("r-cancel"))
    local.cancel("r-cancel")
    obs = local.observe("r-cancel")
    assert obs.phase == "Failed" and obs.reason == "Cancelled"
    wait_for(lambda: not alive(child), timeout=5)
    # The supervisor records the cancel, then exits; on a loaded machine that takes a moment.
    wait_for(lambda: not alive(int(status["pid"])), timeout=10)
    local.cancel("r-cancel")  # already ended: nothing happens


def test_a_missing_command_fails_with_127(local: LocalRunner, settings: Settings) -> None:
    local.launch(request(settings, "r-missing", ["/nonexistent/agent"]))
    obs = wait_for(lambda: (o := local.observe("r-missing")) and o.phase == "Failed" and o)
    assert obs.exit_code == 127


def test_the_built_in_agent_runs_the_whole_lifecycle_through_the_watcher(store: TaskStore, settings: Settings) -> None:
    run_id = launching_task(store, model="claude-sonnet")
    workspace = settings.workspace_root / "billing" / "worktrees" / "1"  # task 1's checkout
    workspace.mkdir(parents=True)
    (workspace / "CLAUDE.md").write_text("# Add an invoice endpoint\n\nDetails.\n")
    (workspace / "TASK.md").write_text("task\n")
    runner = get_runner(settings)
    assert isinstance(runner, LocalRunner)
    sent = Sent()
    assert runs.launch(store, settings, runner, run_id, send=sent) == run_id
    watcher = Watcher(store, settings, runner, send=sent)
    wait_for(lambda: watcher.reconcile() and sent.of(Step.FINISH_RUN))
    run = store.get_run(run_id)
    assert (run.phase, run.exit_code) == ("Succeeded", 0)
    result = (workspace / ".task" / "1" / "runs" / run_id / "result.json").read_text()
    assert "Add an invoice endpoint" in result and "claude-sonnet" in result
    assert any("read CLAUDE.md" in line for line in runner.logs(run_id))
    assert [h["to"] for h in store.history("billing", 1)][-1] in {"Running", "Launching"}


def test_the_example_agent_without_a_brief_exits_2(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "orchestrator.agents.example"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 2 and "no CLAUDE.md" in proc.stderr


def test_the_local_runner_is_not_picked_by_accident_inside_a_cluster(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.settings import ConfigError

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.delenv("ORCHESTRATOR_RUNNER", raising=False)
    with pytest.raises(ConfigError, match="ORCHESTRATOR_RUNNER"):
        get_runner(settings)
    monkeypatch.setenv("ORCHESTRATOR_RUNNER", "local")
    assert isinstance(get_runner(settings), LocalRunner)


def test_the_agent_gets_its_contract_and_nothing_else_of_the_worker(local: LocalRunner, settings: Settings,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's own variables (a stray secret, the GitHub token) stay out; the key goes to Claude Code only.
    monkeypatch.setenv("SOME_WORKER_SECRET", "s3cret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-worker")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"  # a stand-in for Claude Code that prints its environment
    claude.write_text("#!/bin/sh\nenv\n")
    claude.chmod(0o755)
    local.launch(request(settings, "r-claude", [str(claude)]))
    wait_for(lambda: (o := local.observe("r-claude")) and o.phase == "Succeeded")
    seen = dict(line.split("=", 1) for line in local.logs("r-claude") if "=" in line)
    assert seen["ANTHROPIC_API_KEY"] == "sk-local-secret" and seen["ANTHROPIC_MODEL"] == "claude-haiku"
    contract = {"ORCHESTRATOR_RUN_ID", "ORCHESTRATOR_SERVICE", "ORCHESTRATOR_TASK_ID", "ORCHESTRATOR_OUTPUT_DIR",
                "ORCHESTRATOR_CONTEXT_VERSION", "ORCHESTRATOR_ATTEMPT"}
    assert contract <= set(seen)
    allowed = contract | {"ANTHROPIC_API_KEY", "ANTHROPIC_MODEL", "GREETING", "PATH", "HOME", "LANG", "PYTHONPATH",
                          "PWD", "SHLVL", "_"}  # the last three: what the shell adds itself
    assert set(seen) - allowed == set()

    local.launch(request(settings, "r-not-claude", sh("env")))
    wait_for(lambda: (o := local.observe("r-not-claude")) and o.phase == "Succeeded")
    names = {line.split("=", 1)[0] for line in local.logs("r-not-claude") if "=" in line}
    assert "ANTHROPIC_API_KEY" not in names and "GITHUB_TOKEN" not in names and "SOME_WORKER_SECRET" not in names


def test_a_tail_of_a_200_mb_log_reads_from_the_end(local: LocalRunner, settings: Settings) -> None:
    import tracemalloc

    from orchestrator.coordination.outcome import _log_tail

    run_dir = local.run_dir("r-big")
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"command": ["true"], "cwd": "/", "timeout": 60}))
    (run_dir / "status.json").write_text(json.dumps({"phase": "Succeeded", "exit_code": 0}))
    block = b"".join(b"line %07d of the agent's chatter\n" % i for i in range(30000))  # about 1 MB
    with open(run_dir / "output.log", "wb") as log:
        for _ in range(200):
            log.write(block)
        log.write(b"the very last line\n")
    tracemalloc.start()
    try:
        lines = list(local.logs("r-big", tail=3))
        _, api_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        tail = _log_tail(settings, "r-big")  # finish_run's fallback, through get_runner
        _, finish_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == ["line 0029998 of the agent's chatter", "line 0029999 of the agent's chatter",
                     "the very last line"]
    assert tail.endswith("line 0029999 of the agent's chatter\nthe very last line")
    assert api_peak < 2 << 20 and finish_peak < 2 << 20, (api_peak, finish_peak)


def test_the_supervisor_stops_writing_the_log_at_its_cap_and_says_so(local: LocalRunner, settings: Settings) -> None:
    capped = LocalRunner(settings.replace(run_log_max_bytes=10_000))
    # 2 MB of output, then a line written after the cap: the agent must not block on it.
    capped.launch(request(settings, "r-loud", sh("i=0; while [ $i -lt 20000 ]; do "
                                                 "echo 'a line of ninety-odd characters, repeated until the log is "
                                                 "far past its cap'; i=$((i+1)); done; echo done")))
    obs = wait_for(lambda: (o := capped.observe("r-loud")) and o.phase in {"Succeeded", "Failed"} and o, timeout=60)
    assert obs.phase == "Succeeded"
    log = (capped.run_dir("r-loud") / "output.log").read_bytes()
    body, _, notice = log.rpartition(b"\n" + b"orchestrator: ")
    assert len(body) <= 10_000 and b"done" not in log
    assert b"ORCHESTRATOR_RUN_LOG_MAX_BYTES" in notice and len(log) < 10_000 + 300


@pytest.mark.parametrize("content", [b"", b"a", b"a\n", b"a\nb", b"a\nb\n", b"\n\nx\n\n", b"x" * 70000 + b"\ny\n",
                                     (b"%05d\n" * 40000) % tuple(range(40000))])
def test_tail_lines_match_splitlines(tmp_path: Path, content: bytes) -> None:
    from orchestrator.runners.local_files import tail_lines

    (tmp_path / "log").write_bytes(content)
    with open(tmp_path / "log", "rb") as handle:
        for count in (0, 1, 2, 3, 5, 40000):
            assert tail_lines(handle, count) == (content.splitlines()[-count:] if count else [])
            assert handle.tell() == len(content)


def test_a_run_that_ends_while_it_is_observed_is_not_taken_for_lost(local: LocalRunner, settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor writes its outcome and exits between the watcher's read of the status and its
    liveness check: the run succeeded, and must not be declared lost and run a second time."""
    import orchestrator.runners.local as local_module

    run_id = "shop-1-v1-a1"
    run_dir = local.run_dir(run_id)
    run_dir.mkdir(parents=True)
    status = {"phase": "Running", "pid": 999999, "started_at": 1.0}
    (run_dir / "status.json").write_text(json.dumps(status))

    def finished_meanwhile(path: Path, seen: dict) -> bool:
        (run_dir / "status.json").write_text(json.dumps({**status, "phase": "Succeeded", "exit_code": 0,
                                                          "finished_at": 2.0, "reason": "exit code 0"}))
        return False  # the supervisor is gone: it exited after writing

    monkeypatch.setattr(local_module, "supervisor_alive", finished_meanwhile)
    obs = local.observe(run_id)
    assert obs is not None and obs.phase == "Succeeded" and obs.exit_code == 0, obs
