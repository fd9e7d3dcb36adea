"""The watcher keeps a live run's workspace: its worktree lease is renewed past its expiry, under the watcher's fence."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator import runs
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.store import keys as store_keys
from orchestrator.watcher import LEASE, Watcher
from orchestrator.workspace import lease as leases
from tests.support.kube_emulator import KubeEmulator
from tests.support.runs import Sent, launching_task
from tests.support.wait import wait_for


def _running_with_its_lease(
    store: TaskStore, settings: Settings, runner: KubernetesRunner, emulator: KubeEmulator
) -> tuple[str, leases.Lease]:
    run_id = launching_task(store)
    lease = leases.acquire(store, "billing", run_id, settings.workspace_lease_seconds, task_id=1)
    runs.launch(store, settings, runner, run_id, send=Sent())
    emulator.start_pod("billing-1-v1-a1")
    return run_id, lease


def test_a_long_run_keeps_its_worktree_lease_past_its_expiry(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    settings = kube_settings.replace(workspace_lease_seconds=1)  # a run "longer than the lease"
    run_id, lease = _running_with_its_lease(store, settings, kube_runner, emulator)
    watcher = Watcher(store, settings, kube_runner, send=Sent(), watch_timeout=1, poll_seconds=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: store.get_task("billing", 1).status == "Running")
        time.sleep(2.5)  # two and a half expiries
        assert leases.holder(store, "billing", 1) == run_id
        leases.check(store, lease)  # the same grant: never lapsed and taken again
        with pytest.raises(leases.LeaseBusy):  # another run cannot take the live worktree
            leases.acquire(store, "billing", "billing-1-v2-a1", 60, task_id=1)
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_deposed_watcher_renews_no_lease(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    settings = kube_settings.replace(workspace_lease_seconds=60)
    run_id, _ = _running_with_its_lease(store, settings, kube_runner, emulator)
    store.redis.pexpire(store_keys.lease_key(leases.lease_name("billing", 1)), 5_000)
    watcher = Watcher(store, settings, kube_runner, send=Sent(), holder="old")
    token = store.acquire_lease(LEASE, "old", 30)
    watcher.fence = (LEASE, "old", token)
    store.redis.set(store_keys.lease_key(LEASE), "new", px=60_000)  # "old" is deposed and does not know it
    store.redis.incr(store_keys.fence_key(LEASE))
    watcher.reconcile()
    assert store.redis.pttl(store_keys.lease_key(leases.lease_name("billing", 1))) <= 5_000
    watcher.fence = (LEASE, "new", token + 1)  # the leader of now renews
    watcher.reconcile()
    assert store.redis.pttl(store_keys.lease_key(leases.lease_name("billing", 1))) > 50_000
    assert leases.holder(store, "billing", 1) == run_id


def test_an_exclusive_run_keeps_the_service_lock_past_its_expiry(
    store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator
) -> None:
    settings = kube_settings.replace(workspace_lease_seconds=1)
    run_id, _ = _running_with_its_lease(store, settings, kube_runner, emulator)
    lock = leases.acquire(store, "billing", run_id, settings.workspace_lease_seconds)  # the whole service
    watcher = Watcher(store, settings, kube_runner, send=Sent())
    for _ in range(5):
        watcher.reconcile()
        time.sleep(0.5)
    assert leases.holder(store, "billing") == run_id
    leases.check(store, lock)
    with pytest.raises(leases.LeaseBusy):
        leases.acquire(store, "billing", "billing-2-v1-a1", 60)
