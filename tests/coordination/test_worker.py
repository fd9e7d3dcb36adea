"""Coordination with a real Redis and a real Celery worker running the admit and finish steps.

Prepare, launch and the watcher are played by test stand-ins
(tests/support/fake_steps.py) that move tasks through the store as the real
steps do; the coordination steps are the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import workers.app
from orchestrator import dispatch, operations
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.steps import Step
from tests.support import coordination_harness as harness
from workers.app import create_celery
from tests.support.wait import wait_for

PIPELINES = json.dumps({"implement-review-fix": [
    {"name": "implement", "agent": "claude", "prompt": "implement it"},
    {"name": "review", "agent": "reviewer", "prompt": "review it"},
    {"name": "fix", "agent": "claude", "prompt": "fix it"},
]})


@pytest.fixture
def coordinated(worker_factory: Callable, settings: Settings, store: TaskStore,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Start a worker with the coordination steps (and stand-ins) under some settings; returns it."""
    apps = []

    def start(concurrency: int = 4, **env: str) -> Any:
        worker = worker_factory(env=env, include=["tests.support.fake_steps"], pool="threads",
                                concurrency=concurrency)
        # This process sends steps too (submissions, the stand-in watcher): to this Redis.
        app = create_celery(settings)
        apps.append(app)
        monkeypatch.setattr(workers.app, "app", app)
        return worker

    yield start
    for app in apps:
        app.close()


def submit(store: TaskStore, task_id: int, deps: list[int] | None = None, service: str = "web",
           priority: str = "medium", **extra: Any) -> None:
    operations.submit_task(store, {"id": task_id, "title": f"t{task_id}", "service_name": service,
                                   "agent_name": "claude", "priority": priority,
                                   "dependencies": deps or [], **extra}, actor="pm")


class all_in:  # noqa: N801 - reads as a predicate
    """True when every task is in `status`; its repr shows where they are, for a timeout message."""

    def __init__(self, store: TaskStore, status: str, refs: list[tuple[str, int]]):
        self.store, self.status, self.refs = store, status, refs

    def __call__(self) -> bool:
        return all(self.store.require_task(s, n).status == self.status for s, n in self.refs)

    def __repr__(self) -> str:
        tasks = [self.store.require_task(s, n) for s, n in self.refs]
        return "; ".join(f"{t.service}/{t.id} {t.status} ({t.status_reason})" for t in tasks)


def test_chain_of_five_runs_in_order(coordinated, store: TaskStore) -> None:
    coordinated()
    for task_id in (5, 4, 3, 2, 1):
        submit(store, task_id, [task_id - 1] if task_id > 1 else [])
    wait_for(all_in(store, "Succeeded", [("web", n) for n in range(1, 6)]), "the chain to succeed")
    assert harness.launches(store) == [f"web-{n}-v1-a1" for n in range(1, 6)]
    for n in range(2, 6):
        started = store.get_run(f"web-{n}-v1-a1").started_at
        assert started >= store.get_run(f"web-{n - 1}-v1-a1").finished_at
    assert store.slot_counts() == (0, {})


def test_diamond_and_failure_release_on_retry(coordinated, store: TaskStore) -> None:
    coordinated(ORCHESTRATOR_MAX_RUNS_PER_SERVICE="2")
    harness.set_behaviour(store, "web", 1, outcome="fail")
    submit(store, 1)
    submit(store, 2, [1])
    submit(store, 3, [1])
    submit(store, 4, [2, 3])
    wait_for(lambda: store.require_task("web", 1).status == "Failed", "task 1 to fail")
    wait_for(lambda: all(store.require_task("web", n).status_reason.startswith("dependency failed")
                         for n in (2, 3)), "2 and 3 to be blocked by the failure")
    assert store.require_task("web", 4).status == "Blocked"
    harness.set_behaviour(store, "web", 1)
    operations.retry_task(store, "web", 1, actor="pm")
    wait_for(all_in(store, "Succeeded", [("web", n) for n in (1, 2, 3, 4)]), "the diamond to succeed")
    order = harness.launches(store)
    assert order[:2] == ["web-1-v1-a1", "web-1-v1-a2"] and order[-1] == "web-4-v1-a1"


def test_capacity_limits_hold_under_50_concurrent_submissions(coordinated, store: TaskStore) -> None:
    coordinated(ORCHESTRATOR_MAX_ACTIVE_RUNS="3", ORCHESTRATOR_MAX_RUNS_PER_SERVICE="1", concurrency=6)
    services = [f"svc{n}" for n in range(5)]
    refs = [(service, n) for service in services for n in range(1, 11)]
    for service, n in refs:
        harness.set_behaviour(store, service, n, duration=0.05)
    samples: list[tuple[int, dict[str, int]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(store.slot_counts())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        def submit_some(chunk: list[tuple[str, int]]) -> None:
            for service, n in chunk:
                submit(store, n, service=service, priority=("high", "medium", "low")[n % 3])

        threads = [threading.Thread(target=submit_some, args=(refs[i::10],)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_for(all_in(store, "Succeeded", refs), "all 50 tasks to succeed (none starves)", timeout=120)
    finally:
        stop.set()
        sampler.join()
    at_launch = [json.loads(s) for s in store.redis.lrange(harness.SAMPLES_KEY, 0, -1)]
    observed = samples + [(s["total"], s["per_service"]) for s in at_launch]
    assert max(total for total, _ in observed) <= 3
    assert max((n for _, per in observed for n in per.values()), default=0) <= 1
    assert max(total for total, _ in observed) == 3  # the limit was reached, not merely respected
    assert len(harness.launches(store)) == 50  # one run each: no task ran twice
    assert store.slot_counts() == (0, {}) and store.waiting() == []


def test_priorities_decide_who_gets_a_freed_slot(coordinated, store: TaskStore, settings: Settings) -> None:
    coordinated(ORCHESTRATOR_MAX_ACTIVE_RUNS="1", ORCHESTRATOR_MAX_RUNS_PER_SERVICE="5")
    harness.set_behaviour(store, "web", 1, hold=True)
    submit(store, 1)
    wait_for(lambda: store.require_task("web", 1).status == "Running", "the first task to run")
    submit(store, 2, priority="low")
    submit(store, 3, priority="medium")
    submit(store, 4, priority="high")
    submit(store, 5, priority="high")
    wait_for(lambda: len(store.waiting()) == 4, "four tasks waiting")
    harness.fake_watch(store, settings, "web-1-v1-a1", "succeed")
    wait_for(all_in(store, "Succeeded", [("web", n) for n in range(1, 6)]), "all to succeed")
    assert harness.launches(store) == [f"web-{n}-v1-a1" for n in (1, 4, 5, 3, 2)]


def test_three_stage_pipeline_passes_a_handoff_file(coordinated, store: TaskStore, settings: Settings) -> None:
    coordinated(ORCHESTRATOR_PIPELINES=PIPELINES)
    submit(store, 1, pipeline="implement-review-fix")
    wait_for(lambda: store.require_task("web", 1).status == "Succeeded", "the pipeline to complete")
    task = store.require_task("web", 1)
    assert [r.stage for r in store.list_runs("web", 1)] == ["implement", "review", "fix"]
    handoff = harness.workspace_file(settings, "web", task.outputs["handoff_file"]).read_text()
    assert handoff == "implement by claude (implement it)\nreview by reviewer (review it)\nfix by claude (fix it)\n"


def test_redelivered_steps_change_nothing(coordinated, store: TaskStore) -> None:
    worker = coordinated()
    submit(store, 1)
    submit(store, 2, [1])
    wait_for(all_in(store, "Succeeded", [("web", 1), ("web", 2)]), "both to succeed")
    before = {n: (store.require_task("web", n), store.history("web", n), store.list_runs("web", n))
              for n in (1, 2)}
    done = worker.log().count("succeeded in")
    for n in (1, 2):
        dispatch.send(Step.ADMIT, "web", n)
        dispatch.send(Step.FINISH_RUN, f"web-{n}-v1-a1")
    wait_for(lambda: worker.log().count("succeeded in") >= done + 4, "the redelivered steps to run")
    after = {n: (store.require_task("web", n), store.history("web", n), store.list_runs("web", n))
             for n in (1, 2)}
    assert after == before
    assert store.slot_counts() == (0, {})
