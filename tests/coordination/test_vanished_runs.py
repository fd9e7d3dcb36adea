"""A Job that vanished before its end was seen (the watcher down longer than the Job's TTL).

What the run left in its output directory decides: outputs.json (the
contract's last step) or an exit code there means the agent reached its end,
and such a run is never run again; with nothing there it is lost and retried.
"""

from __future__ import annotations

import json

from orchestrator import runs
from orchestrator.coordination import outcome
from orchestrator.coordination.outputs import EXIT_CODE_FILE, OUTPUTS_FILE, run_output_dir
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.watcher import Watcher
from orchestrator.workspace.layout import checkout_dir
from tests.support.kube_emulator import KubeEmulator
from tests.support.runs import Sent, launching_task


def _vanished(
    store: TaskStore, settings: Settings, runner: KubernetesRunner, emulator: KubeEmulator, files: dict[str, str]
) -> str:
    """A run that ran, left `files` in its output directory, and whose Job was removed unseen; finished."""
    run_id = launching_task(store)
    runs.launch(store, settings, runner, run_id, send=Sent())
    emulator.start_pod("billing-1-v1-a1")
    sent = Sent()
    watcher = Watcher(store, settings, runner, send=sent)
    watcher.reconcile()
    assert store.get_task("billing", 1).status == Status.RUNNING
    output = checkout_dir(settings.workspace_root, "billing", 1) / run_output_dir("billing", 1, run_id)
    output.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (output / name).write_text(text)
    emulator.delete("jobs", "billing-1-v1-a1")  # ended and removed by its TTL while no watcher looked
    watcher.reconcile()
    watcher.reconcile()  # missing twice in a row: lost
    assert sent.of(Step.FINISH_RUN) == [(run_id,)]
    Sent().install()
    outcome.finish(store, settings, run_id)
    return run_id


def test_a_vanished_run_that_wrote_its_outputs_is_not_run_again(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    run_id = _vanished(
        store, kube_settings, kube_runner, emulator, {OUTPUTS_FILE: json.dumps({"summary": "did the thing"})}
    )
    task = store.get_task("billing", 1)
    assert task.status == Status.SUCCEEDED, task.status_reason
    assert [r.run_id for r in store.list_runs("billing", 1)] == [run_id]  # never run twice
    run = store.get_run(run_id)
    assert run.phase == "Succeeded" and "removed before its end was seen" in run.observed_reason
    assert task.outputs.get("summary") == "did the thing"


def test_a_vanished_run_whose_exit_code_says_failure_fails_without_a_retry(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    run_id = _vanished(store, kube_settings, kube_runner, emulator, {EXIT_CODE_FILE: "3\n"})
    task = store.get_task("billing", 1)
    assert task.status == Status.FAILED, task.status_reason
    run = store.get_run(run_id)
    assert run.exit_code == 3 and not run.retryable and "exit" in run.failure_reason
    assert [r.run_id for r in store.list_runs("billing", 1)] == [run_id]


def test_a_vanished_run_that_left_nothing_is_retried(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    run_id = _vanished(store, kube_settings, kube_runner, emulator, {})
    task = store.get_task("billing", 1)
    assert task.status == Status.QUEUED and "retry 1 of" in task.status_reason, task.status_reason
    assert store.get_run(run_id).phase == "Failed" and store.get_run(run_id).retryable
