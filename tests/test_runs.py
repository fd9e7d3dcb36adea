"""Launching, observing and cancelling runs against the store (and the emulator for Kubernetes)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from orchestrator import effects, runs
from orchestrator.runners.base import FAILED, PENDING, RUNNING, SUCCEEDED, RunObservation
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import StoreError, TaskStore
from tests.support.kube_emulator import Fault, KubeEmulator
from tests.support.runs import Sent, launching_task


def test_launch_creates_the_job_once_and_a_redelivery_adopts_it(store: TaskStore, kube_settings: Settings,
                                                               kube_runner: KubernetesRunner,
                                                               emulator: KubeEmulator) -> None:
    run_id = launching_task(store, model="claude-opus-4", env={"APP_DEBUG": "1"}, timeout_seconds=900,
                            working_directory="app")
    sent = Sent()
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=sent) == "billing-1-v1-a1"
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=sent) == "billing-1-v1-a1"
    (job,) = emulator.items("jobs")
    # The redelivery found the create recorded complete: the API server was asked once.
    assert emulator.count(lambda r: r.method == "POST") == 1
    assert job["spec"]["activeDeadlineSeconds"] == 900
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["workingDir"] == "/workspace/worktrees/1/app"  # the task's worktree
    assert {"name": "ANTHROPIC_MODEL", "value": "claude-opus-4"} in container["env"]
    run = store.get_run(run_id)
    assert run.job_name == "billing-1-v1-a1" and run.runner == "kubernetes"
    assert sent.calls == []


def test_a_launch_interrupted_after_the_create_is_resolved_by_finding_the_job(
        store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    # A worker recorded its intent, created the Job, and died before recording the completion.
    store.begin_effect(effects.JOB, run_id, "dead-worker", lease_seconds=0.01)
    kube_runner.launch(runs.build_request(kube_settings, store.get_task("billing", 1), store.get_run(run_id)))
    time.sleep(0.02)  # its intent lapses
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent()) == "billing-1-v1-a1"
    assert emulator.count(lambda r: r.method == "POST") == 1  # found by a GET, not created again
    record = store.effect(effects.JOB, run_id)
    assert record["state"] == "done" and record["how"] == "found" and record["attempts"] == "2"
    assert store.get_run(run_id).job_name == "billing-1-v1-a1"


def test_a_launch_interrupted_before_the_create_creates_it(store: TaskStore, kube_settings: Settings,
                                                           kube_runner: KubernetesRunner,
                                                           emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    store.begin_effect(effects.JOB, run_id, "dead-worker", lease_seconds=0.01)
    time.sleep(0.02)
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent()) == "billing-1-v1-a1"
    assert emulator.count(lambda r: r.method == "POST") == 1
    assert store.effect(effects.JOB, run_id)["how"] == "acted"


def test_a_launch_while_another_delivery_is_launching_does_nothing(
        store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    store.begin_effect(effects.JOB, run_id, "live-worker", lease_seconds=60)
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent()) is None
    assert emulator.count(lambda r: r.method in {"POST", "GET"} and "/jobs" in r.path) == 0


def test_a_cancel_that_comes_while_the_job_is_created_stops_it_at_once(
        store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    create = kube_runner.launch

    def launch_then_cancelled(request):  # the PM's cancel lands between the check and the create
        name = create(request)
        store.transition("billing", 1, Status.CANCELLED, reason="cancelled by pm", actor="pm")
        return name

    kube_runner.launch = launch_then_cancelled  # type: ignore[method-assign]
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent()) is None
    assert emulator.count(lambda r: r.method == "POST") == 1
    assert emulator.count(lambda r: r.method == "DELETE") == 1 and emulator.items("jobs") == []


def test_a_stale_launch_message_does_nothing(store: TaskStore, kube_settings: Settings,
                                             kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    store.transition("billing", 1, Status.CANCELLED, reason="cancelled by pm", actor="pm")
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent()) is None
    assert emulator.items("jobs") == []


def test_a_kubernetes_error_at_launch_is_retried_by_the_step_then_fails_with_the_reason(
        store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator,
        sleeps: list[float]) -> None:
    run_id = launching_task(store)
    emulator.faults.append(Fault(status=503, times=1000, method="POST"))
    sent = Sent()
    for retry in range(runs.LAUNCH_RETRIES):  # the step's retries, each after a jittered, growing wait
        with pytest.raises(runs.LaunchLater) as later:
            runs.launch(store, kube_settings, kube_runner, run_id, send=sent, retries=retry)
        assert 0 < later.value.countdown <= kube_settings.stuck_after_seconds / 2
        assert store.get_run(run_id).phase != FAILED and store.get_task("billing", 1).status == "Launching"
    assert store.get_run(run_id).launch_failures == runs.LAUNCH_RETRIES
    # Each try is the client's quick retries (ORCHESTRATOR_KUBE_RETRIES), then no more.
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=sent) is None
    tries = runs.LAUNCH_RETRIES + 1
    assert emulator.count(lambda r: r.method == "POST") == tries * (kube_settings.kube_retries + 1)
    assert len(sleeps) == tries * kube_settings.kube_retries
    run = store.get_run(run_id)
    assert run.phase == FAILED and f"launch failed after {runs.LAUNCH_RETRIES} retries" in run.failure_reason
    assert "503 after 4 attempts" in run.failure_reason
    assert sent.of(Step.FINISH_RUN) == [(run_id,)]


def test_a_kubernetes_error_at_launch_that_heals_launches_one_job(
        store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    emulator.faults.append(Fault(status=500, times=kube_settings.kube_retries + 1, method="POST"))
    with pytest.raises(runs.LaunchLater):
        runs.launch(store, kube_settings, kube_runner, run_id, send=Sent())
    assert "retry 1 of" in store.get_run(run_id).observed_reason
    assert runs.launch(store, kube_settings, kube_runner, run_id, send=Sent(), retries=1) == "billing-1-v1-a1"
    assert [created[:2] for created in emulator.created] == [("jobs", "billing-1-v1-a1")]
    assert store.get_run(run_id).job_name == "billing-1-v1-a1"


def test_a_refused_manifest_fails_the_run_at_once(store: TaskStore, kube_settings: Settings,
                                                  kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    emulator.faults.append(Fault(status=403, times=1, method="POST"))
    sent = Sent()
    runs.launch(store, kube_settings, kube_runner, run_id, send=sent)
    assert emulator.count(lambda r: r.method == "POST") == 1
    assert "needs permission to create jobs.batch" in store.get_run(run_id).failure_reason
    assert sent.of(Step.FINISH_RUN) == [(run_id,)]


def test_an_invalid_task_env_fails_the_run(store: TaskStore, kube_settings: Settings,
                                           kube_runner: KubernetesRunner) -> None:
    run_id = launching_task(store, env={"GITHUB_TOKEN": "smuggled"})
    sent = Sent()
    runs.launch(store, kube_settings, kube_runner, run_id, send=sent)
    assert "may not set GITHUB_TOKEN" in store.get_run(run_id).failure_reason
    assert "smuggled" not in str(store.get_run(run_id))


def test_observations_move_the_task_and_finish_once(store: TaskStore) -> None:
    run_id = launching_task(store)
    sent = Sent()
    runs.apply_observation(store, RunObservation(run_id, PENDING, reason="ContainerCreating"), send=sent)
    assert store.get_task("billing", 1).status == "Launching"
    runs.apply_observation(store, RunObservation(run_id, RUNNING, started_at=100.0), send=sent)
    runs.apply_observation(store, RunObservation(run_id, RUNNING, started_at=100.0), send=sent)
    assert store.get_task("billing", 1).status == "Running"
    runs.apply_observation(store, RunObservation(run_id, PENDING, reason="Evicted"), send=sent)  # no flap back
    assert store.get_run(run_id).phase == RUNNING
    done = RunObservation(run_id, FAILED, reason="Error: exit code 3", exit_code=3, finished_at=200.0)
    assert runs.apply_observation(store, done, send=sent) is True
    assert runs.apply_observation(store, done, send=sent) is False
    assert runs.apply_observation(store, RunObservation(run_id, SUCCEEDED, exit_code=0), send=sent) is False
    run = store.get_run(run_id)
    assert (run.phase, run.exit_code, run.failure_reason) == (FAILED, 3, "Error: exit code 3")
    assert run.started_at == 100.0 and run.finished_at == 200.0
    assert sent.of(Step.FINISH_RUN) == [(run_id,)]
    history = [h["to"] for h in store.history("billing", 1)]
    assert history.count("Running") == 1


def test_a_run_whose_task_moved_on_is_recorded_but_not_finished(store: TaskStore) -> None:
    run_id = launching_task(store)
    store.transition("billing", 1, Status.CANCELLED, reason="cancelled by pm", actor="pm")
    sent = Sent()
    runs.apply_observation(store, RunObservation(run_id, SUCCEEDED, exit_code=0), send=sent)
    assert sent.calls == [] and store.get_run(run_id).phase == SUCCEEDED


def test_an_end_recorded_meanwhile_is_not_written_over(store: TaskStore, monkeypatch) -> None:
    # A watcher read the run while it ran; before it wrote what it saw, a cancel
    # recorded the end. Its write must not turn Cancelled into Failed or Running.
    run_id = launching_task(store)
    sent = Sent()
    runs.apply_observation(store, RunObservation(run_id, RUNNING, started_at=100.0), send=sent)
    before = store.get_run(run_id)
    store.update_run(run_id, phase="Cancelled", failure_reason="cancelled by pm", finish_sent="skipped: cancelled")
    monkeypatch.setattr(store, "get_run", lambda _run_id: dataclasses.replace(before))  # the watcher's earlier read
    lost = RunObservation(run_id, FAILED, reason="Job deleted", exit_code=137, finished_at=200.0)
    assert runs.apply_observation(store, lost, send=sent) is False
    assert runs.apply_observation(store, RunObservation(run_id, RUNNING, reason="still going", started_at=100.0),
                                  send=sent) is False
    monkeypatch.undo()
    run = store.get_run(run_id)
    assert (run.phase, run.failure_reason) == ("Cancelled", "cancelled by pm") and run.exit_code != 137
    assert run.observed_reason != "still going"
    assert sent.of(Step.FINISH_RUN) == []


def test_a_guarded_run_update_writes_only_before_the_end(store: TaskStore) -> None:
    run_id = launching_task(store)
    assert store.update_unended_run(run_id, runs.TERMINAL_PHASES, phase=RUNNING, observed_reason="one") is True
    store.update_run(run_id, phase=SUCCEEDED)
    assert store.update_unended_run(run_id, runs.TERMINAL_PHASES, phase="Cancelled", observed_reason="two") is False
    run = store.get_run(run_id)
    assert (run.phase, run.observed_reason) == (SUCCEEDED, "one")
    with pytest.raises(StoreError):
        store.update_unended_run("no-such-run", runs.TERMINAL_PHASES, phase=RUNNING)


def test_cancel_deletes_the_job_and_records_it(store: TaskStore, kube_settings: Settings,
                                               kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    run_id = launching_task(store)
    runs.launch(store, kube_settings, kube_runner, run_id, send=Sent())
    emulator.start_pod("billing-1-v1-a1")
    runs.cancel(store, kube_runner, run_id, actor="pm@example.com")
    assert emulator.items("jobs") == [] and emulator.items("pods") == []
    delete = next(r for r in emulator.requests if r.method == "DELETE")
    assert delete.path.endswith("/jobs/billing-1-v1-a1")
    run = store.get_run(run_id)
    assert run.phase == "Cancelled" and run.failure_reason == "cancelled by pm@example.com"
    runs.cancel(store, kube_runner, run_id)  # again: nothing to do, no error
