"""A superseded run keeps its worktree lease and capacity slot until its agent has stopped.

New context supersedes a running run: its task is admitted again at once,
while the run's cancel step (another queue) may come later and a deleted
pod takes a while to stop. Until the watcher sees nothing of the old agent
left, the new run must not take (and reset) the worktree under it, nor its slot.
"""

from __future__ import annotations

import pytest

from orchestrator import operations, runs
from orchestrator.coordination import admission
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from orchestrator.watcher import Watcher
from orchestrator.workspace import lease as leases
from tests.support.kube_emulator import KubeEmulator
from tests.support.runs import Sent, launching_task


def test_a_superseded_runs_worktree_and_slot_stay_its_own_until_its_agent_stops(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    settings = kube_settings.replace(max_runs_per_service=1, max_active_runs=10)
    sent = Sent().install()
    old = launching_task(store)
    assert (
        store.acquire_slot(old, "billing", lease_seconds=settings.slot_lease_seconds, global_limit=10, service_limit=1)
        == 1
    )
    leases.acquire(store, "billing", old, settings.workspace_lease_seconds, task_id=1)
    runs.launch(store, settings, kube_runner, old, send=sent)
    pod = emulator.start_pod("billing-1-v1-a1")

    operations.add_context(store, "billing", 1, {"content": "more"}, actor="pm", dispatcher=sent)
    admission.admit(store, settings, "billing", 1)  # admitted again before the cancel step ran
    task = store.get_task("billing", 1)
    new = task.next_run
    assert new and new != old
    assert leases.holder(store, "billing", 1) == old
    assert old in store.slot_holders()
    assert task.status == Status.QUEUED  # the service's one slot is still the old agent's
    with pytest.raises(leases.LeaseBusy):
        leases.acquire(store, "billing", new, settings.workspace_lease_seconds, task_id=1)

    watcher = Watcher(store, settings, kube_runner, send=sent)
    watcher.reconcile()  # it sees the superseded agent still running, its cancel step not yet come: stops it
    assert emulator.count(lambda r: r.method == "DELETE" and r.path.endswith("/jobs/billing-1-v1-a1")) == 1
    assert store.get_run(old).phase == "Cancelled"
    runs.cancel(store, kube_runner, old, actor="pm")  # the cancel step, late: nothing left to do
    for stale in ("resourceVersion", "uid"):
        pod["metadata"].pop(stale)
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    lingering = emulator.put("pods", pod)  # ...while its pod takes its grace period to stop
    watcher.reconcile()
    watcher.reconcile()
    assert leases.holder(store, "billing", 1) == old and old in store.slot_holders()
    assert store.get_task("billing", 1).status == Status.QUEUED
    emulator.delete("pods", lingering["metadata"]["name"])  # the agent has stopped
    watcher.reconcile()
    watcher.reconcile()
    assert old not in store.slot_holders()
    assert leases.holder(store, "billing", 1) != old
    task = store.get_task("billing", 1)
    assert task.status == Status.PREPARING and task.current_run == new  # started once the old one stopped
    leases.acquire(store, "billing", new, settings.workspace_lease_seconds, task_id=1)


def test_a_cancelled_run_whose_agent_never_launched_frees_its_slot_at_once(
    store: TaskStore, kube_settings: Settings
) -> None:
    settings = kube_settings.replace(max_runs_per_service=1, max_active_runs=10)
    Sent().install()
    old = launching_task(store)
    store.acquire_slot(old, "billing", lease_seconds=60, global_limit=10, service_limit=1)
    leases.acquire(store, "billing", old, settings.workspace_lease_seconds, task_id=1)
    operations.cancel_task(store, "billing", 1, actor="pm", dispatcher=Sent())
    admission.admit(store, settings, "billing", 1)
    assert old not in store.slot_holders() and leases.holder(store, "billing", 1) is None
