"""Cancel races launch: wherever a PM's cancel lands in a launch, no Job is left that nothing tracks.

The kubernetes runner on the emulator; every Job POST and DELETE is counted.
The cancel is injected after each store call the launch makes (the launch's
reads, its intent and completion records, its record of the Job), with the
cancel step run at once or only after the launch returned, and once in a
launch whose worker dies between creating the Job and recording it.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import operations, runs
from orchestrator.runners.base import RUNNING, RunObservation
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from tests.support.kube_emulator import KubeEmulator
from tests.support.runs import Sent, launching_task


class Died(BaseException):
    """The worker process dies here (kill -9): nothing after this point runs."""


class CancelAfter:
    """The store, with the PM's cancel landing right after its `nth` call."""

    def __init__(self, store: TaskStore, nth: int, cancel: Any) -> None:
        self._store, self._nth, self._cancel, self.calls = store, nth, cancel, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.calls += 1
            if self.calls == self._nth:
                self._cancel()
            return result

        return call


def _cancel(store: TaskStore, runner: KubernetesRunner, steps: list[str], *, step_now: bool) -> Any:
    """The PM's cancel; its cancel_run step runs at once, or is left in `steps` for later."""

    def cancel() -> None:
        sent = Sent()
        operations.cancel_task(store, "billing", 1, actor="pm", dispatcher=sent)
        for (run_id,) in sent.of(Step.CANCEL_RUN):
            if step_now:
                runs.cancel(store, runner, run_id, actor="pm")
            else:
                steps.append(run_id)

    return cancel


def _settled(store: TaskStore, run_id: str, emulator: KubeEmulator) -> None:
    assert emulator.items("jobs") == []  # nothing runs that nobody tracks
    assert emulator.count(lambda r: r.method == "POST") <= 1
    assert store.get_task("billing", 1).status == "Cancelled"
    run = store.get_run(run_id)
    assert run.ended, run.phase  # and the run record says so (never Launched under a Cancelled task)


@pytest.mark.parametrize("step_now", [True, False], ids=["cancel-step-at-once", "cancel-step-later"])
@pytest.mark.parametrize("nth", range(1, 9))
def test_a_cancel_anywhere_in_a_launch_leaves_no_job(
    store: TaskStore,
    kube_settings: Settings,
    kube_runner: KubernetesRunner,
    emulator: KubeEmulator,
    nth: int,
    step_now: bool,
) -> None:
    run_id = launching_task(store)
    later: list[str] = []
    cancel = _cancel(store, kube_runner, later, step_now=step_now)
    racing = CancelAfter(store, nth, cancel)
    runs.launch(racing, kube_settings, kube_runner, run_id, send=Sent())  # type: ignore[arg-type]
    if racing.calls < nth:
        cancel()  # the launch made fewer calls: the cancel comes after it
    for cancelled in later:
        runs.cancel(store, kube_runner, cancelled, actor="pm")
    _settled(store, run_id, emulator)


@pytest.mark.parametrize("step_now", [True, False], ids=["cancel-step-at-once", "cancel-step-later"])
def test_a_launch_that_died_after_the_create_and_is_redelivered_after_a_cancel_removes_its_job(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator, step_now: bool
) -> None:
    run_id = launching_task(store, env={})
    later: list[str] = []
    cancel = _cancel(store, kube_runner, later, step_now=step_now)
    create = kube_runner.launch

    def cancelled_then_create_then_die(request: Any) -> str:
        cancel()  # the cancel (and maybe its step, which finds no Job yet) lands first
        create(request)
        raise Died()

    kube_runner.launch = cancelled_then_create_then_die  # type: ignore[method-assign]
    with pytest.raises(Died):
        runs.launch(store, kube_settings, kube_runner, run_id, send=Sent())
    kube_runner.launch = create  # type: ignore[method-assign]
    runs.launch(store, kube_settings, kube_runner, run_id, send=Sent())  # the message is redelivered
    for cancelled in later:
        runs.cancel(store, kube_runner, cancelled, actor="pm")
    _settled(store, run_id, emulator)
    assert emulator.count(lambda r: r.method == "DELETE") >= 1


def test_a_launch_recorded_after_the_watcher_saw_its_pod_start_stays_running(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    run_id = launching_task(store)
    create = kube_runner.launch

    def create_then_seen_running(request: Any) -> str:
        name = create(request)
        runs.apply_observation(store, RunObservation(run_id, RUNNING, started_at=100.0), send=Sent())
        return name

    kube_runner.launch = create_then_seen_running  # type: ignore[method-assign]
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent()) == "billing-1-v1-a1"
    run = store.get_run(run_id)
    assert run.phase == RUNNING and run.job_name == "billing-1-v1-a1"  # not back to Launched
    assert store.get_task("billing", 1).status == "Running"


def test_a_launch_redelivered_after_its_run_ended_by_itself_deletes_nothing(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    """The worker died between creating the Job and recording it; the watcher saw the agent run and
    succeed; the re-driven launch must leave the finished Job (and its logs) to its TTL."""
    from orchestrator.runners.base import SUCCEEDED

    run_id = launching_task(store, env={})
    create = kube_runner.launch

    def create_then_die(request: Any) -> str:
        create(request)
        raise Died()

    kube_runner.launch = create_then_die  # type: ignore[method-assign]
    with pytest.raises(Died):
        runs.launch(store, kube_settings, kube_runner, run_id, send=Sent())
    kube_runner.launch = create  # type: ignore[method-assign]
    runs.apply_observation(store, RunObservation(run_id, RUNNING, started_at=100.0), send=Sent())
    runs.apply_observation(store, RunObservation(run_id, SUCCEEDED, finished_at=200.0, exit_code=0), send=Sent())
    runs.launch(store, kube_settings, kube_runner, run_id, send=Sent())  # the message is redelivered
    assert emulator.count(lambda r: r.method == "DELETE") == 0
    assert emulator.get("jobs", "billing-1-v1-a1") is not None
