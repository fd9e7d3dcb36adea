"""admit / finish / re-drive against a real Redis, with every step run in-process in order.

The stand-ins for prepare, launch and the watcher (tests/support/coordination_harness.py)
move tasks through the store exactly as the real steps do.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from orchestrator import operations
from orchestrator.coordination import admission, outcome, redrive
from orchestrator.coordination.stages import parse_pipelines
from orchestrator.settings import Settings
from orchestrator.store import TaskStore, broker
from orchestrator.steps import Step
from tests.support.coordination_harness import (
    Driver,
    launches,
    set_behaviour,
    workspace_file,
)

SERVICE = "web"


@pytest.fixture
def drive(store: TaskStore, settings: Settings) -> Driver:
    return Driver(store, settings.replace(max_active_runs=10, max_runs_per_service=1, retry_backoff_seconds=5))


def submit(store: TaskStore, task_id: int, deps: list[int] | None = None, service: str = SERVICE,
           priority: str = "medium", **extra: Any) -> dict:
    spec = {"id": task_id, "title": f"task {task_id}", "service_name": service, "agent_name": "claude",
            "priority": priority, "dependencies": deps or [], **extra}
    return operations.submit_task(store, spec, actor="pm")


def status(store: TaskStore, task_id: int, service: str = SERVICE) -> str:
    return store.require_task(service, task_id).status


def test_single_task_runs_to_success_and_collects_outputs(store: TaskStore, drive: Driver) -> None:
    submit(store, 1)
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert task.status == "Succeeded"
    assert task.outputs["pull_request_url"] == "https://github.com/o/web/pull/1"
    assert task.outputs["log_tail"] == "last line of web-1-v1-a1"
    assert task.outputs["exit_code"] == 0
    run = store.get_run("web-1-v1-a1")
    assert run.outputs["branch"] == "task-1"
    assert run.agent == "claude" and run.output_dir == ".task/1/runs/web-1-v1-a1"
    assert [h["to"] for h in store.history(SERVICE, 1)] == [
        "Pending", "Queued", "Preparing", "Launching", "Running", "Succeeded"]
    assert store.slot_counts() == (0, {})


def test_chain_of_five_runs_in_order(store: TaskStore, drive: Driver) -> None:
    # Submitted newest-first, so only the dependencies can explain the order.
    for task_id in (5, 4, 3, 2, 1):
        submit(store, task_id, [task_id - 1] if task_id > 1 else [])
    assert store.require_task(SERVICE, 5).status == "Pending"
    drive.run()
    assert launches(store) == [f"web-{n}-v1-a1" for n in (1, 2, 3, 4, 5)]
    assert all(status(store, n) == "Succeeded" for n in range(1, 6))


def test_blocked_reason_names_dependencies_including_unknown(store: TaskStore, drive: Driver) -> None:
    set_behaviour(store, SERVICE, 1, hold=True)
    submit(store, 1)
    submit(store, 2, [1, 9])
    drive.run()
    task = store.require_task(SERVICE, 2)
    assert task.status == "Blocked"
    assert task.status_reason == "waiting for dependencies: 1, 9 (unknown task)"
    drive.complete("web-1-v1-a1")
    drive.run()
    assert store.require_task(SERVICE, 2).status_reason == "waiting for dependencies: 9 (unknown task)"
    submit(store, 9)  # the unknown one arrives later, and releases 2 when it succeeds
    drive.run()
    assert status(store, 2) == "Succeeded"


def test_diamond(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(max_runs_per_service=2)
    set_behaviour(store, SERVICE, 2, hold=True)
    submit(store, 1)
    submit(store, 2, [1])
    submit(store, 3, [1])
    submit(store, 4, [2, 3])
    drive.run()
    assert status(store, 3) == "Succeeded" and status(store, 2) == "Running"
    assert store.require_task(SERVICE, 4).status_reason == "waiting for dependencies: 2"
    drive.complete("web-2-v1-a1")
    drive.run()
    assert status(store, 4) == "Succeeded"
    order = launches(store)
    assert order[0] == "web-1-v1-a1" and order[-1] == "web-4-v1-a1"


def test_cycle_is_refused_with_the_cycle_named(store: TaskStore, drive: Driver) -> None:
    submit(store, 3, [5])  # 5 is unknown: accepted
    submit(store, 4, [3])
    with pytest.raises(operations.DependencyCycle) as caught:
        submit(store, 5, [4])
    assert str(caught.value) == "dependencies would form a cycle in service web: 5 -> 4 -> 3 -> 5"
    assert caught.value.cycle == [5, 4, 3, 5]
    assert isinstance(caught.value, operations.OperationRefused)
    assert store.get_task(SERVICE, 5) is None
    with pytest.raises(operations.DependencyCycle, match="7 -> 7"):
        submit(store, 7, [7])
    submit(store, 5, [], service="api")  # another service is another graph


def test_cycle_that_slipped_in_is_shown_at_admission(store: TaskStore, drive: Driver) -> None:
    # Two racing submissions can each miss the other; admission names the cycle.
    submit(store, 1, [2])
    store.create_task(service=SERVICE, task_id=2, agent="claude", spec={"id": 2, "dependencies": [1]})
    admission.admit(store, drive.settings, SERVICE, 2)
    assert store.require_task(SERVICE, 2).status_reason.startswith("dependency cycle 2 -> 1 -> 2;")


def test_failure_blocks_dependents_and_retry_releases_them(store: TaskStore, drive: Driver) -> None:
    set_behaviour(store, SERVICE, 1, outcome="fail")
    submit(store, 1)
    submit(store, 2, [1])
    submit(store, 3, [2])
    drive.run()
    task1 = store.require_task(SERVICE, 1)
    assert task1.status == "Failed"
    assert task1.status_reason == "run web-1-v1-a1 failed: agent exited with code 1"
    assert len(store.list_runs(SERVICE, 1)) == 1  # an agent failure is not retried
    task2 = store.require_task(SERVICE, 2)
    assert task2.status == "Blocked"
    assert task2.status_reason == "dependency failed or cancelled; waiting for 1 (Failed)"
    assert store.require_task(SERVICE, 3).status_reason == "waiting for dependencies: 2"

    set_behaviour(store, SERVICE, 1, outcome="succeed")
    operations.retry_task(store, SERVICE, 1, actor="pm")
    drive.run()
    assert [status(store, n) for n in (1, 2, 3)] == ["Succeeded"] * 3
    assert [r.run_id for r in store.list_runs(SERVICE, 1)] == ["web-1-v1-a1", "web-1-v1-a2"]


def test_cancelled_dependency_blocks_and_frees_the_slot(store: TaskStore, drive: Driver) -> None:
    set_behaviour(store, SERVICE, 1, hold=True)
    submit(store, 1)
    submit(store, 2, [1])
    drive.run()
    assert store.slot_counts() == (1, {SERVICE: 1})
    operations.cancel_task(store, SERVICE, 1, actor="pm")
    drive.run()
    assert store.slot_counts() == (0, {})
    assert store.require_task(SERVICE, 2).status_reason == "dependency failed or cancelled; waiting for 1 (Cancelled)"
    # The watcher sees the cancelled run end later; finish changes nothing.
    drive.complete("web-1-v1-a1", "fail")
    drive.run()
    assert status(store, 1) == "Cancelled"


def test_platform_failures_are_retried_with_backoff_as_new_runs(store: TaskStore, drive: Driver) -> None:
    set_behaviour(store, SERVICE, 1, platform_failures=2)
    submit(store, 1)
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert task.status == "Queued"
    # 5 s, jittered (orchestrator.backoff): between half of it and all of it.
    assert re.fullmatch(r"run web-1-v1-a1 failed \(pod evicted\); retry 1 of 2 in [2-5]s", task.status_reason)
    assert float(task.not_before) > time.time()
    # The wake-up is sent with the backoff as countdown; nothing starts before it.
    step, args, countdown = drive.delayed[-1]
    assert (step, args) == (Step.ADMIT, (SERVICE, 1)) and 1.5 < countdown <= 5
    admission.admit_waiting(store, drive.settings)
    assert status(store, 1) == "Queued"
    store.update_task(SERVICE, 1, not_before=0)  # the backoff is over
    drive.sent.clear()
    admission.admit(store, drive.settings, SERVICE, 1)
    drive.run()
    assert status(store, 1) == "Queued"  # the second attempt failed too
    assert re.search(r"retry 2 of 2 in ([5-9]|10)s$", store.require_task(SERVICE, 1).status_reason)
    store.update_task(SERVICE, 1, not_before=0)
    drive.sent.clear()
    admission.admit(store, drive.settings, SERVICE, 1)
    drive.run()
    assert status(store, 1) == "Succeeded"
    assert [r.run_id for r in store.list_runs(SERVICE, 1)] == ["web-1-v1-a1", "web-1-v1-a2", "web-1-v1-a3"]


def test_retries_give_up_after_the_configured_number(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(max_retries=0)
    set_behaviour(store, SERVICE, 1, outcome="platform")
    submit(store, 1)
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert task.status == "Failed"
    assert task.status_reason == "run web-1-v1-a1 failed: pod evicted"


def test_capacity_limits_and_priority_order(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(max_active_runs=2, max_runs_per_service=1)
    for n in range(1, 4):
        set_behaviour(store, SERVICE, n, hold=True)
        set_behaviour(store, "api", n, hold=True)
    submit(store, 1)
    submit(store, 2, priority="low")
    submit(store, 3, priority="high")
    submit(store, 1, service="api")
    submit(store, 2, service="api")
    drive.run()
    assert store.slot_counts() == (2, {"web": 1, "api": 1})
    assert [r for r in launches(store)] == ["web-1-v1-a1", "api-1-v1-a1"]
    assert store.waiting() == [("web", 3), ("api", 2), ("web", 2)]  # high first, then oldest
    drive.complete("web-1-v1-a1")
    drive.run()
    assert launches(store)[-1] == "web-3-v1-a1"  # high beats the older low one
    drive.complete("web-3-v1-a1")
    drive.complete("api-1-v1-a1")
    drive.run()
    assert sorted(launches(store)[-2:]) == ["api-2-v1-a1", "web-2-v1-a1"]
    assert store.slot_counts() == (2, {"web": 1, "api": 1})


PIPELINES = json.dumps({"implement-review-fix": [
    {"name": "implement", "agent": "claude", "prompt": "implement it"},
    {"name": "review", "agent": "reviewer", "image": "example/reviewer:1", "prompt": "review it"},
    {"name": "fix", "agent": "claude", "prompt": "fix what the review found"},
]})


def test_three_stage_pipeline_passes_the_handoff(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(pipelines=parse_pipelines(PIPELINES))
    submit(store, 1, pipeline="implement-review-fix")
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert task.status == "Succeeded", task.status_reason
    assert task.status_reason == "pipeline completed (run web-1-v1-fix-a1); no repository, nothing delivered"
    runs = store.list_runs(SERVICE, 1)
    assert [(r.stage, r.agent) for r in runs] == [
        ("implement", "claude"), ("review", "reviewer"), ("fix", "claude")]
    assert runs[1].image == "example/reviewer:1"
    assert runs[1].inputs == {"branch": "task-1", "pull_request_url": "https://github.com/o/web/pull/1",
                                 "handoff_file": ".task/1/runs/web-1-v1-implement-a1/handoff.md"}
    handoff = workspace_file(drive.settings, SERVICE, task.outputs["handoff_file"]).read_text()
    assert handoff == ("implement by claude (implement it)\nreview by reviewer (review it)\n"
                       "fix by claude (fix what the review found)\n")
    assert set(task.outputs["stages"]) == {"implement", "review", "fix"}


def test_failed_stage_fails_the_task_and_retry_resumes_there(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(pipelines=parse_pipelines(PIPELINES))
    submit(store, 1, pipeline="implement-review-fix")
    original = drive.steps[Step.LAUNCH_RUN]

    def launch_failing_review(run_id: str) -> None:
        set_behaviour(store, SERVICE, 1, outcome="fail" if "-review-" in run_id else "succeed")
        original(run_id)

    drive.steps[Step.LAUNCH_RUN] = launch_failing_review
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert task.status == "Failed"
    assert task.status_reason == "stage review failed: agent exited with code 1"
    assert task.stage == "review"
    drive.steps[Step.LAUNCH_RUN] = original
    set_behaviour(store, SERVICE, 1)
    operations.retry_task(store, SERVICE, 1, actor="pm")
    drive.run()
    assert status(store, 1) == "Succeeded"
    assert [r.run_id for r in store.list_runs(SERVICE, 1)] == [
        "web-1-v1-implement-a1", "web-1-v1-review-a1", "web-1-v1-review-a2", "web-1-v1-fix-a1"]


def test_new_context_supersedes_the_active_run(store: TaskStore, drive: Driver) -> None:
    set_behaviour(store, SERVICE, 1, hold=True)
    submit(store, 1)
    drive.run()
    operations.add_context(store, SERVICE, 1, {"filename": "review.md", "content": "please rename"}, actor="pm")
    assert (Step.CANCEL_RUN, ("web-1-v1-a1",), None) in drive.sent
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert task.status == "Running" and task.current_run == "web-1-v2-a1"
    assert store.slot_counts() == (1, {SERVICE: 1})  # the old run's slot went to the new one
    drive.complete("web-1-v1-a1", "fail")  # the cancelled process ends; nothing changes
    drive.run()
    assert store.require_task(SERVICE, 1).current_run == "web-1-v2-a1"
    drive.complete("web-1-v2-a1")
    drive.run()
    assert status(store, 1) == "Succeeded"
    assert store.require_task(SERVICE, 1).outputs["run_id"] == "web-1-v2-a1"


def _snapshot(store: TaskStore) -> dict:
    keys = sorted(k for k in store.redis.keys("orch:*") if not k.startswith("orch:slots"))
    snap = {}
    for key in keys:
        kind = store.redis.type(key)
        if kind == "hash":
            snap[key] = {k: v for k, v in store.redis.hgetall(key).items() if k not in ("updated_at",)}
        elif kind == "list":
            snap[key] = store.redis.lrange(key, 0, -1)
        elif kind == "zset":
            snap[key] = store.redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            snap[key] = sorted(store.redis.smembers(key))
        else:
            snap[key] = store.redis.get(key)
    snap["slots"] = sorted(store.slot_holders())
    return snap


def test_every_step_redelivered_changes_nothing(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(pipelines=parse_pipelines(PIPELINES))
    set_behaviour(store, SERVICE, 1, platform_failures=1)
    submit(store, 1, pipeline="implement-review-fix")
    submit(store, 2, [1])
    handled = 0
    while drive.sent:
        step, args, _c = drive.sent.pop(0)
        drive.steps[step](*args)
        handled += 1
        if step in (Step.ADMIT, Step.FINISH_RUN):
            before, queued = _snapshot(store), list(drive.sent)
            drive.steps[step](*args)  # the redelivery
            assert _snapshot(store) == before, step
            assert drive.sent == queued, step
        task = store.require_task(SERVICE, 1)
        if task.status == "Queued" and task.not_before and float(task.not_before) > 0:
            store.update_task(SERVICE, 1, not_before=0)
    assert handled > 10
    assert status(store, 1) == "Succeeded" and status(store, 2) == "Succeeded"


def test_redrive_does_not_resend_a_step_whose_message_still_waits_in_its_queue(store: TaskStore,
                                                                                drive: Driver) -> None:
    drive.settings = drive.settings.replace(stuck_after_seconds=1)
    set_behaviour(store, SERVICE, 1, hold=True)
    submit(store, 1)
    drive.sent.clear()
    redrive.redrive_stuck(store, drive.settings, now=time.time() + 5)
    assert status(store, 1) == "Preparing"
    drive.sent.clear()
    # No worker consumes: the prepare message still waits in the workspace queue.
    queue = Step.PREPARE_WORKSPACE.queue
    store.enqueue(queue, broker.message(queue, {"task": Step.PREPARE_WORKSPACE.value, "id": "m-1",
                                                "argsrepr": "['web-1-v1-a1']"}, {}, ["web-1-v1-a1"], "{}",
                                        reply_to="r"))
    done = redrive.redrive_stuck(store, drive.settings, now=time.time() + 5)
    assert done["resent"] == [] and done["queued"] == ["orchestrator.prepare_workspace:web-1-v1-a1"]
    assert drive.sent == []
    store.redis.delete(queue)  # taken by a worker that died: re-sent from the store's record
    done = redrive.redrive_stuck(store, drive.settings, now=time.time() + 5)
    assert done["resent"] == ["orchestrator.prepare_workspace:web-1-v1-a1"]


def test_redrive_resends_lost_steps_and_reclaims_slots(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(stuck_after_seconds=1)
    set_behaviour(store, SERVICE, 1, hold=True)
    submit(store, 1)
    drive.sent.clear()  # the admit message is lost
    later = time.time() + 5
    redrive.redrive_stuck(store, drive.settings, now=later)
    assert status(store, 1) == "Preparing"
    drive.sent.clear()  # ... and the prepare message too
    done = redrive.redrive_stuck(store, drive.settings, now=time.time() + 5)
    assert done["resent"] == ["orchestrator.prepare_workspace:web-1-v1-a1"]
    assert done["renewed"] == ["web-1-v1-a1"]
    drive.run()
    assert status(store, 1) == "Running"
    # The watcher recorded the end but finish was lost.
    store.update_run("web-1-v1-a1", phase="Succeeded", exit_code=0)
    done = redrive.redrive_stuck(store, drive.settings, now=time.time() + 5)
    assert done["resent"] == ["orchestrator.finish_run:web-1-v1-a1"]
    drive.run()
    assert status(store, 1) == "Succeeded"
    # A slot whose run ended without anyone releasing it is reclaimed.
    store.acquire_slot("web-1-v1-a1", SERVICE, lease_seconds=60, global_limit=5, service_limit=5)
    done = redrive.redrive_stuck(store, drive.settings)
    assert done["released"] == ["web-1-v1-a1"] and store.slot_counts() == (0, {})


def test_redrive_resends_finish_only_for_running_tasks_whose_run_ended(store: TaskStore, drive: Driver) -> None:
    drive.settings = drive.settings.replace(stuck_after_seconds=1, max_runs_per_service=3)
    for task_id in (1, 2, 3):
        set_behaviour(store, SERVICE, task_id, hold=True)
        submit(store, task_id)
    drive.run()
    assert [status(store, n) for n in (1, 2, 3)] == ["Running"] * 3
    store.update_run("web-2-v1-a1", phase="Failed", exit_code=1)  # recorded; its finish was lost
    store.update_run("web-3-v1-a1", phase="Running")
    done = redrive.redrive_stuck(store, drive.settings, now=time.time() + 5)
    assert done["resent"] == ["orchestrator.finish_run:web-2-v1-a1"]
    drive.run()
    assert [status(store, n) for n in (1, 2, 3)] == ["Running", "Failed", "Running"]


def test_a_pipeline_that_is_not_configured_fails_the_task(store: TaskStore, drive: Driver) -> None:
    submit(store, 1, pipeline="gone")
    drive.run()
    task = store.require_task(SERVICE, 1)
    assert (task.status, task.status_reason) == ("Failed", "pipeline 'gone' is not configured")
    assert store.list_runs(SERVICE, 1) == [] and store.waiting() == []


def test_log_tail_falls_back_to_the_runner_with_secrets_blanked(store: TaskStore, drive: Driver,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    class Runner:
        def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None):
            return iter([f"line {n}\n" for n in range(30)] + [f"token {drive.settings.github_token}\n"])

    monkeypatch.setattr(outcome, "get_runner", lambda settings: Runner())
    drive.settings = drive.settings.replace(github_token="ghp_secret")
    set_behaviour(store, SERVICE, 1, hold=True)
    submit(store, 1)
    drive.run()
    store.update_run("web-1-v1-a1", phase="Succeeded", exit_code=0)  # a watcher that recorded no tail
    outcome.finish(store, drive.settings, "web-1-v1-a1")
    tail = store.require_task(SERVICE, 1).outputs["log_tail"].splitlines()
    assert tail[0] == "line 11" and tail[-1] == "token ***" and len(tail) == 20


def test_a_run_requeued_by_a_busy_workspace_resumes_with_its_slot(store: TaskStore, drive: Driver) -> None:
    from orchestrator.states import Status

    submit(store, 1)
    while drive.sent and drive.sent[0][0] != Step.PREPARE_WORKSPACE:
        drive.run(limit=1)
    # prepare_workspace found the workspace busy: Preparing -> Queued, then asks for admission again.
    store.transition(SERVICE, 1, Status.QUEUED, reason="waiting for the workspace", actor="workspace",
                     expect=Status.PREPARING)
    drive.sent = [(Step.ADMIT, (SERVICE, 1), None)]
    drive.run()
    assert status(store, 1) == "Succeeded"
    assert [r.run_id for r in store.list_runs(SERVICE, 1)] == ["web-1-v1-a1"]
    assert store.slot_counts() == (0, {})
