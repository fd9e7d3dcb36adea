"""The store's coordination keys: capacity slots with leases, the admission index, dependents."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from orchestrator.states import Status
from orchestrator.store import IllegalTransition, TaskStore, connect


def test_slots_respect_both_limits_and_are_idempotent(store: TaskStore) -> None:
    take = lambda run, service: store.acquire_slot(run, service, lease_seconds=60, global_limit=3,  # noqa: E731
                                                   service_limit=2)
    assert take("a1", "a") == 1
    assert take("a1", "a") == 1  # the same holder again: renewed, not counted twice
    assert take("a2", "a") == 1
    assert take("a3", "a") == -1  # the service is full
    assert take("b1", "b") == 1
    assert take("c1", "c") == 0  # the whole system is full
    assert store.slot_counts() == (3, {"a": 2, "b": 1})
    assert store.release_slot("a1") is True
    assert store.release_slot("a1") is False  # idempotent
    assert take("c1", "c") == 1
    assert set(store.slot_holders()) == {"a2", "b1", "c1"}


def test_an_expired_slot_frees_itself(store: TaskStore) -> None:
    assert store.acquire_slot("r1", "s", lease_seconds=0.2, global_limit=1, service_limit=1) == 1
    assert store.acquire_slot("r2", "s", lease_seconds=60, global_limit=1, service_limit=1) == 0
    assert store.renew_slot("r1", 0.2)
    time.sleep(0.3)  # the holder crashed and never renewed
    assert store.slot_counts() == (0, {})
    assert "r1" in store.slot_holders()  # still visible to a sweep until purged
    assert store.renew_slot("r1", 60) is False  # too late: the lease is gone
    assert store.acquire_slot("r2", "s", lease_seconds=60, global_limit=1, service_limit=1) == 1
    assert store.release_slot("r1") is False
    assert set(store.slot_holders()) == {"r2"}


def _grab(url: str, run_prefix: str, results: "multiprocessing.Queue[int]") -> None:
    store = TaskStore(connect(url))
    taken = 0
    for n in range(50):
        taken += store.acquire_slot(f"{run_prefix}-{n}", f"svc{n % 4}", lease_seconds=60, global_limit=7,
                                    service_limit=2) == 1
    results.put(taken)


def test_racing_processes_never_exceed_the_limits(store: TaskStore, redis_url: str) -> None:
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_grab, args=(redis_url, f"p{i}", results)) for i in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert sum(results.get(timeout=5) for _ in procs) == 7
    total, per_service = store.slot_counts()
    assert total == 7 and max(per_service.values()) == 2


def test_waiting_index_order_and_conditional_removal(store: TaskStore) -> None:
    for n in (1, 2, 3):
        store.create_task(service="web", task_id=n, agent="claude", spec={"id": n})
    store.add_waiting("web", 1, 20)
    store.add_waiting("web", 2, 10)
    store.add_waiting("web", 3, 30)
    store.add_waiting("web", 1, 5)  # an existing entry keeps its place
    assert store.waiting() == [("web", 2), ("web", 1), ("web", 3)]
    assert store.waiting(limit=1) == [("web", 2)]
    assert store.remove_waiting("web", 2, keep=(Status.PENDING,)) is False  # it is Pending: kept
    assert store.remove_waiting("web", 2, keep=(Status.QUEUED,)) is True
    assert store.remove_waiting("web", 9) is False
    assert store.waiting() == [("web", 1), ("web", 3)]


def test_dependents_index(store: TaskStore) -> None:
    store.add_dependents("web", 5, [3, 4])
    store.add_dependents("web", 6, [3])
    assert store.dependents_of("web", 3) == [5, 6]
    assert store.dependents_of("web", 4) == [5]
    assert store.dependents_of("api", 3) == []


def test_transition_can_expect_field_values(store: TaskStore) -> None:
    store.create_task(service="web", task_id=1, agent="claude", spec={"id": 1})
    store.transition("web", 1, Status.QUEUED, reason="r", actor="t", fields={"next_run": "run-a"})
    with pytest.raises(IllegalTransition) as caught:
        store.transition("web", 1, Status.PREPARING, reason="r", actor="t", expect=Status.QUEUED,
                         expect_fields={"next_run": "run-b"})
    assert caught.value.conflict
    with pytest.raises(IllegalTransition):
        store.transition("web", 1, Status.PREPARING, reason="r", actor="t", expect_fields={"missing": "x"})
    store.transition("web", 1, Status.PREPARING, reason="r", actor="t", expect=Status.QUEUED,
                     expect_fields={"next_run": "run-a", "missing": ""})
    assert store.require_task("web", 1).status == "Preparing"
