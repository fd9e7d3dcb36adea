"""Stalls: a running agent that prints nothing for the stall time is stopped, fails as stalled, retried once."""

from __future__ import annotations

import os
import time

import pytest

from orchestrator import runs
from orchestrator.coordination import outcome
from orchestrator.model import Run, RunPhase
from orchestrator.runners import get_runner
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.usage.stall import StallCheck
from orchestrator.watcher import Watcher
from orchestrator.workspace.layout import checkout_dir
from tests.support.runs import Sent, launching_task
from tests.support.wait import wait_for


def test_a_silent_run_is_stopped_and_fails_as_stalled_retryable_once(
        store: TaskStore, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Sent().install()
    monkeypatch.setattr(outcome, "notify", lambda *a: None)
    quiet = settings.replace(stall_seconds=60, retry_backoff_seconds=1,
                             local_agent_command=("/bin/sh", "-c", "echo started; sleep 30"))
    run_id = launching_task(store)
    checkout_dir(quiet.workspace_root, "billing", 1).mkdir(parents=True, exist_ok=True)
    runner = get_runner(quiet)
    runs.launch(store, quiet, runner, run_id, send=sent)
    watcher = Watcher(store, quiet, runner, send=sent)
    wait_for(lambda: watcher.reconcile() is not None and (run := store.get_run(run_id)) is not None and run.phase == "Running"
             and (runner.run_dir(run_id) / "output.log").stat().st_size > 0)
    assert watcher.reconcile().finished == []  # it printed a moment ago
    # Its output last grew two minutes ago.
    log = runner.run_dir(run_id) / "output.log"
    old = time.time() - 120
    os.utime(log, (old, old))
    store.update_run(run_id, started_at=old)
    assert run_id in watcher.reconcile().finished
    run = store.get_run(run_id)
    assert run.phase == "Failed" and run.failure_reason.startswith("stalled: no output for 1")
    assert run.retryable is True and (run_id,) in sent.of(Step.FINISH_RUN)
    wait_for(lambda: runner.observe(run_id).phase == "Failed")  # the process was stopped
    assert outcome.finish(store, quiet, run_id) == "Queued"
    assert "stalled: no output for" in store.require_task("billing", 1).status_reason


def test_pod_logs_are_compared_line_by_line_and_not_too_often(settings: Settings) -> None:
    class Pods:
        kind = "kubernetes"

        def __init__(self) -> None:
            self.line, self.reads = "one", 0

        def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None):
            self.reads += 1
            return iter([self.line])

    pods = Pods()
    check = StallCheck(settings.replace(stall_seconds=100), pods)
    active = {"r1": Run(run_id="r1", phase=RunPhase.RUNNING, started_at=1000.0)}
    assert check.stalled(active, now=1010) == {} and pods.reads == 0  # too young to be stalled: not read
    assert check.stalled(active, now=1080) == {} and pods.reads == 1
    assert check.stalled(active, now=1090) == {} and pods.reads == 1  # looked again only after 25 s
    assert check.stalled(active, now=1181) == {"r1": 101}
    pods.line = "two"
    assert check.stalled(active, now=1210) == {}
    assert check.stalled({}, now=1300) == {} and check.seen == {}
    assert StallCheck(settings.replace(stall_seconds=0), pods).stalled(active, now=99999) == {}
