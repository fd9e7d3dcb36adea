"""The per-service workspace lease: contention between processes, expiry, fencing, takeover."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestrator.store import TaskStore
from orchestrator.workspace import lease as leases
from tests.workspace.conftest import start_run, task_spec

CONTENDER = """
import sys, time
from orchestrator.store import TaskStore, connect
from orchestrator.workspace import lease as leases
store = TaskStore(connect(sys.argv[1]))
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
try:
    lease = leases.acquire(store, "shop", sys.argv[2], 30)
    print("got", lease.token)
except leases.LeaseBusy as exc:
    print("busy", exc.holder)
"""


def test_two_processes_contend_and_exactly_one_wins(redis_url: str, base_env: dict[str, str]) -> None:
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, redis_url, f"run-{i}", str(start)],
                              env=base_env, stdout=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=30)[0].split() for p in procs]
    winners = [o for o in outputs if o[0] == "got"]
    losers = [o for o in outputs if o[0] == "busy"]
    assert len(winners) == 1 and len(losers) == 1
    winner_name = f"run-{outputs.index(winners[0])}"
    assert losers[0][1] == winner_name


def test_a_crashed_holders_lease_expires(store: TaskStore) -> None:
    first = leases.acquire(store, "shop", "crashed-run", 0.2)
    with pytest.raises(leases.LeaseBusy):
        leases.acquire(store, "shop", "next-run", 30)
    deadline = time.monotonic() + 5
    while True:
        try:
            second = leases.acquire(store, "shop", "next-run", 30)
            break
        except leases.LeaseBusy:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert second.token > first.token
    # The old holder wakes up: its token is stale, so it must not write.
    with pytest.raises(leases.LeaseLost):
        leases.check(store, first)
    leases.check(store, second)


def test_same_holder_reacquires_renews_and_releases(store: TaskStore) -> None:
    lease = leases.acquire(store, "shop", "run-a", 30)
    assert leases.acquire(store, "shop", "run-a", 30).token == lease.token
    assert leases.renew(store, "shop", "run-a", 30)
    assert not leases.renew(store, "shop", "run-b", 30)
    assert not leases.release(store, "shop", "run-b")
    assert leases.holder(store, "shop") == "run-a"
    assert leases.release(store, "shop", "run-a")
    assert leases.holder(store, "shop") is None


def test_the_lease_of_a_run_that_is_over_is_taken_over(store: TaskStore) -> None:
    old = start_run(store, task_spec(1, repository=None))
    leases.acquire(store, "shop", old, 3600)
    # Still its task's current run and active: it is respected.
    new = start_run(store, task_spec(2, repository=None))
    with pytest.raises(leases.LeaseBusy) as busy:
        leases.acquire(store, "shop", new, 3600)
    assert busy.value.holder == old
    store.update_run(old, finished_at=time.time())
    assert leases.acquire(store, "shop", new, 3600).holder == new


def test_a_launched_superseded_run_keeps_its_lease(store: TaskStore) -> None:
    old = start_run(store, task_spec(1, repository=None))
    store.update_run(old, job_name="job-old")
    leases.acquire(store, "shop", old, 3600)
    store.transition("shop", 1, "Cancelled", reason="test", actor="test")
    with pytest.raises(leases.LeaseBusy):  # the old agent may still be running
        leases.acquire(store, "shop", "other", 3600)
