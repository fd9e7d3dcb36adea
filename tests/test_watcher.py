"""The watcher against the emulator: Jobs driven through their ends, restarts, 410, TTL, sweep, lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from orchestrator import runs
from orchestrator.kube.jobs import ANNOTATION_RUN_ID
from orchestrator.runners.base import RunObservation
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import LeaseNotHeld, TaskStore
from orchestrator.store import keys as store_keys
from orchestrator.watcher import LEASE, Watcher
from tests.support.kube_emulator import now_iso
from tests.support.runs import Sent, launching_task
from tests.support.wait import wait_for


class Running:
    """A watcher loop in a thread, stoppable like a killed process."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=watcher.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def start_watcher(store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner
                  ) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(sent: Sent, *, settings: Settings | None = None, holder: str | None = None) -> Running:
        watcher = Watcher(store, settings or kube_settings, kube_runner, send=sent, holder=holder,
                          watch_timeout=1, poll_seconds=0.3)
        running = Running(watcher)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop_event.set()
    for running in started:
        running.thread.join(timeout=10)


def launched(store: TaskStore, settings: Settings, runner: KubernetesRunner, task_id: int, **spec) -> str:
    run_id = launching_task(store, task_id=task_id, **spec)
    runs.launch(store, settings, runner, run_id, send=Sent())
    return run_id


def status_of(store: TaskStore, task_id: int) -> str:
    return store.get_task("billing", task_id).status


def test_success_failure_and_pod_reasons_reach_the_run(store, kube_settings, kube_runner, emulator,
                                                       start_watcher) -> None:
    sent = Sent()
    ids = {i: launched(store, kube_settings, kube_runner, i) for i in range(1, 8)}
    name = {i: f"billing-{i}-v1-a1" for i in ids}
    start_watcher(sent)
    pods = {i: emulator.start_pod(name[i], suffix="p")["metadata"]["name"] for i in (1, 2, 3, 4, 5)}
    wait_for(lambda: all(status_of(store, i) == "Running" for i in (1, 2, 3, 4, 5)))

    # 1 succeeds; 2 fails with exit code 3; 3 is OOMKilled; 4 hits its deadline; 5 is evicted, then fails.
    emulator.terminate_pod(pods[1], 0)
    emulator.finish_job(name[1], "Complete", "CompletionsReached")
    emulator.terminate_pod(pods[2], 3)
    emulator.finish_job(name[2], "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    emulator.terminate_pod(pods[3], 137, reason="OOMKilled")
    emulator.finish_job(name[3], "Failed", "BackoffLimitExceeded")
    emulator.finish_job(name[4], "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
    emulator.set_pod_status(pods[5], {"phase": "Failed", "reason": "Evicted", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]})
    emulator.finish_job(name[5], "Failed", "PodFailurePolicy")
    # 6 cannot pull its image and 7 cannot be scheduled, both for longer than the pending timeout.
    emulator.start_pod(name[6], phase="Pending", age=1000, status={"containerStatuses": [
        {"name": "agent", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
         "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]})
    emulator.start_pod(name[7], phase="Pending", age=1000, status={"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient cpu."}]})

    wait_for(lambda: len(sent.of(Step.FINISH_RUN)) == 7)
    time.sleep(0.7)  # two more reconciles: still exactly once each
    assert sorted(args[0] for args in sent.of(Step.FINISH_RUN)) == sorted(ids.values())
    run = {i: store.get_run(ids[i]) for i in ids}
    assert (run[1].phase, run[1].exit_code) == ("Succeeded", 0)
    assert (run[2].phase, run[2].exit_code, run[2].failure_reason) == ("Failed", 3, "Error: exit code 3")
    assert (run[3].failure_reason, run[3].exit_code) == ("OOMKilled", 137)
    assert run[4].failure_reason.startswith("DeadlineExceeded")
    assert run[5].failure_reason == "Evicted" and run[5].retryable is True
    assert run[6].failure_reason.startswith("ImagePullBackOff") and run[6].retryable is True
    assert run[7].failure_reason.startswith("Unschedulable: 0/3 nodes")
    assert all(run[i].started_at for i in (1, 2, 3, 4, 5))
    # Runs we failed while their Job still ran had their Job deleted.
    assert emulator.get("jobs", name[6]) is None and emulator.get("jobs", name[7]) is None
    # The tasks stay where finish_run (the coordination owner's step) will take them from.
    assert status_of(store, 1) == "Running" and status_of(store, 6) == "Launching"


def test_a_killed_watcher_is_replaced_and_nothing_is_lost_or_duplicated(store, kube_settings, kube_runner,
                                                                        emulator, start_watcher) -> None:
    sent = Sent()
    ids = {i: launched(store, kube_settings, kube_runner, i) for i in range(1, 7)}
    name = {i: f"billing-{i}-v1-a1" for i in ids}
    first = start_watcher(sent, holder="first")
    pods = {i: emulator.start_pod(name[i], suffix="p")["metadata"]["name"] for i in ids}
    wait_for(lambda: all(status_of(store, i) == "Running" for i in ids))
    emulator.terminate_pod(pods[1], 0)
    emulator.finish_job(name[1], "Complete")
    wait_for(lambda: len(sent.of(Step.FINISH_RUN)) == 1)
    first.stop()  # killed mid-stream

    # While nobody watches: 2 and 3 end, 1's Job is deleted by its TTL, and history is compacted (410).
    emulator.terminate_pod(pods[2], 0)
    emulator.finish_job(name[2], "Complete")
    emulator.terminate_pod(pods[3], 1)
    emulator.finish_job(name[3], "Failed", "BackoffLimitExceeded")
    emulator.delete("jobs", name[1])
    emulator.compact()

    second = start_watcher(sent, holder="second")
    wait_for(lambda: len(sent.of(Step.FINISH_RUN)) == 3)
    # The new watcher keeps following the adopted runs through the watch.
    emulator.terminate_pod(pods[4], 0)
    emulator.finish_job(name[4], "Complete")
    wait_for(lambda: len(sent.of(Step.FINISH_RUN)) == 4)
    time.sleep(1.0)
    assert second.watcher.leader
    finished = [args[0] for args in sent.of(Step.FINISH_RUN)]
    assert sorted(finished) == sorted([ids[1], ids[2], ids[3], ids[4]])  # each exactly once
    assert status_of(store, 5) == "Running" and status_of(store, 6) == "Running"
    assert store.get_run(ids[1]).phase == "Succeeded"  # its TTL-deleted Job changed nothing
    assert emulator.count(lambda r: r.method == "POST") == 6  # nothing was launched again


def test_a_job_that_vanished_before_its_end_was_seen_fails_the_run(store, kube_settings, kube_runner,
                                                                     emulator, start_watcher) -> None:
    sent = Sent()
    run_id = launched(store, kube_settings, kube_runner, 1)
    start_watcher(sent)
    emulator.start_pod("billing-1-v1-a1")
    wait_for(lambda: status_of(store, 1) == "Running")
    emulator.delete("jobs", "billing-1-v1-a1")
    wait_for(lambda: sent.of(Step.FINISH_RUN))
    run = store.get_run(run_id)
    assert run.phase == "Failed" and "disappeared" in run.failure_reason and run.retryable is True


def test_a_410_during_the_watch_relists_and_misses_nothing(store, kube_settings, kube_runner, emulator,
                                                           start_watcher) -> None:
    sent = Sent()
    settings = kube_settings.replace(reconcile_seconds=3600)
    run_id = launched(store, settings, kube_runner, 1)
    watcher = Watcher(store, settings, kube_runner, send=sent, watch_timeout=1, poll_seconds=3600)
    running = Running(watcher)
    try:
        wait_for(lambda: watcher.leader and watcher._streams)
        time.sleep(0.2)
        emulator.start_pod("billing-1-v1-a1", suffix="p")
        emulator.compact()  # the stream's next resume hits 410
        emulator.finish_job("billing-1-v1-a1", "Complete")
        emulator.compact()
        wait_for(lambda: sent.of(Step.FINISH_RUN), timeout=15)
        assert store.get_run(run_id).phase == "Succeeded"
    finally:
        running.stop()


def test_sweep_removes_only_our_old_finished_jobs(store, kube_settings, kube_runner, emulator) -> None:
    old = now_iso(time.time() - 10 * 86400)

    def job(name: str, labels: dict, condition: str | None) -> None:
        emulator.put("jobs", {"metadata": {"name": name, "namespace": "default", "labels": labels},
                              "spec": {"template": {"spec": {"containers": []}}}})
        if condition:
            emulator.patch("jobs", name, {"status": {"completionTime": old, "conditions": [
                {"type": condition, "status": "True", "lastTransitionTime": old}]}})

    ours = {"app.kubernetes.io/managed-by": "orchestrator"}
    job("ours-old-done", ours, "Complete")
    job("ours-old-failed", ours, "Failed")
    job("ours-live", ours, None)
    job("theirs-old-done", {"app": "other"}, "Complete")
    watcher = Watcher(store, kube_settings.replace(sweep_after_seconds=86400), kube_runner, send=Sent())
    report = watcher.reconcile()
    assert sorted(report.swept) == ["ours-old-done", "ours-old-failed"]
    assert sorted(j["metadata"]["name"] for j in emulator.items("jobs")) == ["ours-live", "theirs-old-done"]


def test_only_one_watcher_leads(store, kube_settings, kube_runner, emulator, start_watcher) -> None:
    a = start_watcher(Sent(), holder="a")
    wait_for(lambda: a.watcher.leader)
    b = start_watcher(Sent(), holder="b")
    time.sleep(0.5)
    assert a.watcher.leader and not b.watcher.leader
    a.stop()  # releases the lease on a clean stop
    wait_for(lambda: b.watcher.leader, timeout=15)


def test_reconcile_costs_two_requests_however_many_runs(store, kube_settings, kube_runner, emulator) -> None:
    for i in range(1, 31):
        launched(store, kube_settings, kube_runner, i)
    watcher = Watcher(store, kube_settings, kube_runner, send=Sent())
    before = len(emulator.requests)
    report = watcher.reconcile()
    assert report.active == 30 and report.observed == 30
    assert len(emulator.requests) - before == 2



def test_reconcile_observes_the_active_runs_only(store, kube_settings, kube_runner, emulator) -> None:
    """A finished Job stays listed until its TTL; a reconcile does not observe the runs nobody waits for."""
    for i in (1, 2):
        launched(store, kube_settings, kube_runner, i)
        emulator.start_pod(f"billing-{i}-v1-a1", suffix="p")
    emulator.put("jobs", {"metadata": {"name": "billing-9-v1-a1", "namespace": "default",
                                       "labels": {"app.kubernetes.io/managed-by": "orchestrator"},
                                       "annotations": {ANNOTATION_RUN_ID: "billing-9-v1-a1"}},
                          "spec": {"template": {"spec": {"containers": []}}}})
    emulator.finish_job("billing-9-v1-a1", "Complete")
    sent = Sent()
    report = Watcher(store, kube_settings, kube_runner, send=sent).reconcile()
    assert (report.active, report.observed, report.finished, report.lost) == (2, 2, [], [])
    assert sent.of(Step.FINISH_RUN) == []

def test_a_reconcile_reads_enough_of_each_run_to_tell_a_quiet_one(store, kube_settings) -> None:
    """is_quiet answers the same on RECONCILE_RUN_FIELDS as on the whole run record."""
    from orchestrator.runners.base import FAILED, PENDING, RUNNING, SUCCEEDED, RunObservation
    from orchestrator.model import Run
    from orchestrator.watcher import RECONCILE_RUN_FIELDS

    records = [{}, {"phase": "Launched"}, {"phase": "Pending", "observed_reason": "waiting for a pod"},
               {"phase": "Running", "started_at": 1700000000.5, "observed_reason": "Running"},
               {"phase": "Running", "started_at": 1700000000.5, "observed_reason": "Evicted; waiting"},
               {"phase": "Succeeded", "started_at": 1700000000.5}]
    observations = [RunObservation("x", RUNNING, reason="Running", started_at=1700000000.5),
                    RunObservation("x", RUNNING, reason="Running"),
                    RunObservation("x", PENDING, reason="waiting for a pod"),
                    RunObservation("x", PENDING, reason="Unschedulable", started_at=1700000000.5),
                    RunObservation("x", SUCCEEDED, reason="Completed", exit_code=0),
                    RunObservation("x", FAILED, reason="Error: exit code 1", exit_code=1)]
    checked, answers = 0, set()
    for i, fields in enumerate(records, start=1):
        run_id = launching_task(store, task_id=i)
        if fields:
            store.update_run(run_id, **fields)
        for task_status in ("Launching", "Running"):
            if task_status == "Running":
                store.transition("billing", i, Status.RUNNING, reason="test", actor="test")
            watcher = Watcher(store, kube_settings, KubernetesRunner(kube_settings), send=Sent())
            narrow, narrow_status = watcher.active_runs()[run_id]
            assert narrow_status == task_status
            # Only the fields a reconcile asked for are read; the others keep their defaults.
            blank = Run()
            assert narrow.run_id == run_id and all(getattr(narrow, f) == getattr(blank, f) for f in Run.__slots__
                                                   if f not in RECONCILE_RUN_FIELDS)
            whole = store.get_run(run_id)
            for obs in observations:
                obs = RunObservation(run_id, obs.phase, obs.reason, obs.exit_code, obs.started_at)
                quiet = runs.is_quiet(whole, task_status, obs)
                assert runs.is_quiet(narrow, task_status, obs) == quiet, (fields, task_status, obs)
                checked, answers = checked + 1, answers | {quiet}
    assert checked == len(records) * 2 * len(observations) and answers == {True, False}


# The lease: losing and regaining it, and a deposed leader's writes --------------------------------

def _usurp(store: TaskStore, holder: str = "usurper") -> None:
    """Another watcher takes the lease (as after this one's lease lapsed): a new holder, a new fence."""
    store.redis.set(store_keys.lease_key(LEASE), holder, px=60_000)
    store.redis.incr(store_keys.fence_key(LEASE))


def _lose_and_regain(store: TaskStore, watcher: Watcher) -> None:
    running = Running(watcher)
    try:
        wait_for(lambda: watcher.leader)
        first = watcher.fence
        assert first is not None and first[2] > 0
        _usurp(store)
        wait_for(lambda: not watcher.leader, timeout=10)
        assert running.thread.is_alive()
        store.release_lease(LEASE, "usurper")
        wait_for(lambda: watcher.leader, timeout=10)
        assert running.thread.is_alive()
        assert watcher.fence is not None and watcher.fence[2] > first[2]
    finally:
        running.stop()


def test_the_watcher_survives_losing_and_regaining_its_lease_with_the_kubernetes_runner(
        store, kube_settings, kube_runner, emulator) -> None:
    settings = kube_settings.replace(watcher_lease_seconds=1.5)
    _lose_and_regain(store, Watcher(store, settings, kube_runner, send=Sent(), watch_timeout=1, poll_seconds=0.2))


def test_the_watcher_survives_losing_and_regaining_its_lease_with_the_local_runner(store, settings) -> None:
    settings = settings.replace(runner="local", watcher_lease_seconds=1.5)
    _lose_and_regain(store, Watcher(store, settings, LocalRunner(settings), send=Sent(), poll_seconds=0.2))


def test_a_deposed_leaders_observation_is_refused(store, kube_settings, kube_runner) -> None:
    run_id = launching_task(store, task_id=7)
    sent = Sent()
    watcher = Watcher(store, kube_settings, kube_runner, send=sent, holder="old")
    token = store.acquire_lease(LEASE, "old", 30)
    watcher.fence = (LEASE, "old", token)
    _usurp(store, "new")  # "old" is deposed and does not know it yet
    before = store.get_run(run_id)
    assert not watcher.apply(RunObservation(run_id, "Failed", reason="seen by a deposed leader",
                                            finished_at=time.time()))
    assert store.get_run(run_id).phase == before.phase and not sent.calls
    with pytest.raises(LeaseNotHeld):
        runs.apply_observation(store, RunObservation(run_id, "Running", started_at=time.time()), send=sent,
                               lease=(LEASE, "old", token))
    assert status_of(store, 7) == "Launching"
    # The leader of now writes.
    runs.apply_observation(store, RunObservation(run_id, "Running", started_at=time.time()), send=sent,
                           lease=(LEASE, "new", token + 1))
    assert status_of(store, 7) == "Running" and store.get_run(run_id).phase == "Running"


def test_the_watcher_outlives_errors_redis_answers_while_it_restarts_or_fails_over(store, settings,
                                                                                  monkeypatch) -> None:
    # Not a lost connection (that is a StoreError): Redis's own refusals, raised as they come.
    import redis

    settings = settings.replace(runner="local", watcher_lease_seconds=1.5)
    watcher = Watcher(store, settings, LocalRunner(settings), send=Sent(), poll_seconds=0.2)
    failures = {"lease": 2, "reconcile": 2}
    passes: list[float] = []
    acquire, reconcile = store.acquire_lease, watcher.reconcile

    def flaky_acquire(*args, **kwargs):
        if failures["lease"]:
            failures["lease"] -= 1
            raise redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica.")
        return acquire(*args, **kwargs)

    def flaky_reconcile():
        if failures["reconcile"]:
            failures["reconcile"] -= 1
            raise redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots")
        passes.append(time.monotonic())
        return reconcile()

    monkeypatch.setattr(store, "acquire_lease", flaky_acquire)
    monkeypatch.setattr(watcher, "reconcile", flaky_reconcile)
    running = Running(watcher)
    try:
        wait_for(lambda: failures == {"lease": 0, "reconcile": 0} and watcher.leader, timeout=20)
        # It goes on reconciling, as leader, after the errors.
        wait_for(lambda: len(passes) >= 3, timeout=10)
        assert running.thread.is_alive() and watcher.leader
    finally:
        running.stop()
