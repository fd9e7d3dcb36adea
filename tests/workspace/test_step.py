"""The prepare_workspace step's plain code, and the step itself in a real Celery worker."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.coordination import redrive
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace import step as pipeline
from orchestrator.workspace.cleanup import DISK_GAUGE
from tests.support.git_server import GitHttpServer
from tests.support.runs import Sent
from tests.workspace.conftest import TOKEN, start_run, task_spec
from workers.app import create_celery


@pytest.fixture
def sent() -> list[tuple[Any, ...]]:
    """Steps queued by the code under test (the queue itself is exercised in the worker test)."""
    recorder = Sent().install()
    return recorder.flat


def test_ready_workspace_moves_the_task_to_launching(remote: Path, ws_settings: Settings, store: TaskStore,
                                                     sent: list) -> None:
    run_id = start_run(store, task_spec())
    result = pipeline.prepare_for_run(store, ws_settings, run_id)
    assert result.action == "launched"
    task = store.get_task("shop", 7)
    assert task.status == "Launching" and "branch task-7" in task.status_reason
    assert sent == [(Step.LAUNCH_RUN, run_id)]
    run = store.get_run(run_id)
    assert run.branch == "task-7" and len(run.commit) == 40
    assert leases.holder(store, "shop", 7) == run_id  # the task's worktree: held until the run ends
    assert leases.holder(store, "shop") is None  # the service lock: only for the clone's operations
    # Delivered again (redelivered, or re-driven while the first waited in its queue): launch_run
    # went with the move to Launching, so nothing is sent twice; a lost one is the re-drive's.
    assert pipeline.prepare_for_run(store, ws_settings, run_id).action == "skipped"
    assert sent == [(Step.LAUNCH_RUN, run_id)]


def test_busy_workspace_retries_then_requeues(ws_settings: Settings, store: TaskStore, sent: list) -> None:
    run_id = start_run(store, task_spec(repository=None))
    leases.acquire(store, "shop", "another-tool", 3600, task_id=7)
    result = pipeline.prepare_for_run(store, ws_settings, run_id)
    assert result.action == "retry" and result.countdown and "another-tool" in result.message
    assert store.get_task("shop", 7).status == "Preparing"
    result = pipeline.prepare_for_run(store, ws_settings, run_id, retries=pipeline.BUSY_RETRIES)
    assert result.action == "requeued"
    assert store.get_task("shop", 7).status == "Queued"
    assert sent == [(Step.ADMIT, "shop", 7)]  # admission decides when it runs again


def test_transient_git_failure_is_retried_then_fails(remote: Path, git_server: GitHttpServer,
                                                     ws_settings: Settings, store: TaskStore, sent: list) -> None:
    git_server.fail_status = 503
    run_id = start_run(store, task_spec())
    first = pipeline.prepare_for_run(store, ws_settings, run_id)
    assert first.action == "retry" and first.countdown is not None
    assert pipeline.backoff(3) > pipeline.backoff(0) * 2
    last = pipeline.prepare_for_run(store, ws_settings, run_id, retries=pipeline.GIT_RETRIES)
    assert last.action == "failed"
    assert store.get_task("shop", 7).status == "Failed"


def test_permanent_failure_fails_the_task_with_a_scrubbed_message(remote: Path, ws_settings: Settings,
                                                                  store: TaskStore, sent: list) -> None:
    run_id = start_run(store, task_spec(repository={"url": "https://git.example.test/acme/shop.git",
                                                     "branch": "no-such-branch"}))
    result = pipeline.prepare_for_run(store, ws_settings, run_id)
    assert result.action == "failed"
    task = store.get_task("shop", 7)
    assert task.status == "Failed" and "no-such-branch" in task.status_reason
    assert store.get_run(run_id).phase == "Failed"
    assert leases.holder(store, "shop") is None
    assert sent == [(Step.FINISH_RUN, run_id), (Step.ADMIT, "shop", 7)]


def test_wrong_token_failure_never_shows_the_token(remote: Path, ws_settings: Settings, store: TaskStore,
                                                  sent: list) -> None:
    bad = ws_settings.replace(github_token="ghp_bad_but_secret_value_123")
    run_id = start_run(store, task_spec())
    result = pipeline.prepare_for_run(store, bad, run_id)
    assert result.action == "failed"
    reason = store.get_task("shop", 7).status_reason
    assert "ghp_bad_but_secret_value_123" not in reason and TOKEN not in reason
    assert any(h["to"] == "Failed" for h in store.history("shop", 7))


def test_a_lease_lost_after_the_writes_is_retried_not_launched(ws_settings: Settings, store: TaskStore,
                                                                sent: list, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = start_run(store, task_spec(repository=None))
    real = pipeline.prepare_workspace

    def then_lose_the_lease(*args: Any, **kwargs: Any) -> Any:
        prepared = real(*args, **kwargs)
        leases.release(store, "shop", run_id)  # expired while the step was paused; another run took it
        leases.acquire(store, "shop", "another-run", 60)
        return prepared

    monkeypatch.setattr(pipeline, "prepare_workspace", then_lose_the_lease)
    result = pipeline.prepare_for_run(store, ws_settings, run_id)
    assert result.action == "retry" and result.countdown
    assert store.get_task("shop", 7).status == "Preparing" and sent == []
    assert store.get_run(run_id).branch == ""  # nothing recorded as prepared


def test_stale_messages_are_dropped(ws_settings: Settings, store: TaskStore, sent: list) -> None:
    run_id = start_run(store, task_spec(repository=None))
    store.transition("shop", 7, "Cancelled", reason="pm", actor="test")
    assert pipeline.prepare_for_run(store, ws_settings, run_id).action == "skipped"
    assert pipeline.prepare_for_run(store, ws_settings, "shop-99-v1-a1").action == "skipped"
    assert sent == []


def test_the_steps_in_a_real_worker(remote: Path, git_server: GitHttpServer, settings: Settings,
                                    store: TaskStore, worker_factory, base_env: dict[str, str],
                                    redis_url: str) -> None:
    env = {**git_server.git_env(), "GITHUB_TOKEN": TOKEN}
    worker = worker_factory(queues=("workspace",), env=env)
    run_id = start_run(store, task_spec())
    app = create_celery(settings)
    try:
        app.send_task(Step.PREPARE_WORKSPACE, args=[run_id], queue="workspace")
        deadline = time.monotonic() + 60
        while store.get_task("shop", 7).status != "Launching":
            assert time.monotonic() < deadline, store.get_task("shop", 7)
            time.sleep(0.1)
        # launch_run waits in the deploy queue, which no worker of this test serves.
        # The task moves to Launching just before launch_run is queued: wait for the message too.
        client = redis.Redis.from_url(redis_url)
        while client.llen("deploy") != 1:
            assert time.monotonic() < deadline, client.llen("deploy")
            time.sleep(0.05)
        workspace = Path(base_env["ORCHESTRATOR_WORKSPACE_ROOT"]) / "shop" / "worktrees" / "7"
        assert (workspace / ".task" / "7" / "v1" / "task.md").is_file()
        result = app.send_task(Step.CLEANUP_WORKSPACE, queue="workspace", ignore_result=False)
        report = result.get(timeout=60)
        assert report["disk_bytes"] > 0 and report["removed"] == []
        assert store.gauges()[DISK_GAUGE] == report["disk_bytes"]
        assert "prepare_workspace" in worker.log() and TOKEN not in worker.log()
        client.close()
    finally:
        app.close()


def test_a_slow_preparation_keeps_its_task_fresh(remote: Path, git_server: GitHttpServer, ws_settings: Settings,
                                                 store: TaskStore, sent: list) -> None:
    # The clone takes longer than the stuck threshold: the reconcile loop, running
    # meanwhile, must not take the preparation for a lost message and send it again.
    settings = ws_settings.replace(stuck_after_seconds=1.0)
    git_server.delay = 0.5  # each of the clone's requests
    run_id = start_run(store, task_spec())
    resent: list[str] = []
    done = {"flag": False}

    def reconcile_meanwhile() -> None:
        while not done["flag"]:
            time.sleep(0.25)
            report = redrive.redrive_stuck(store, settings)
            resent.extend(report["resent"])

    watcher = threading.Thread(target=reconcile_meanwhile)
    watcher.start()
    started = time.monotonic()
    try:
        result = pipeline.prepare_for_run(store, settings, run_id)
    finally:
        done["flag"] = True
        watcher.join()
    assert time.monotonic() - started > 2 * settings.stuck_after_seconds  # slower than the threshold
    assert result.action == "launched"
    assert [r for r in resent if r.startswith(Step.PREPARE_WORKSPACE)] == []
    # Once the preparation is over, nothing touches the task any more.
    touched = store.get_task("shop", 7).updated_at
    time.sleep(1.0)
    assert store.get_task("shop", 7).updated_at == touched


def test_a_retry_waiting_in_its_worker_is_not_taken_for_a_lost_step(ws_settings: Settings, store: TaskStore,
                                                                    sent: list) -> None:
    # A countdown's message is held by the worker, out of the queue where the re-drive looks: the wait is
    # shorter than half the re-drive's patience and the task is touched, so no second preparation starts.
    settings = ws_settings.replace(stuck_after_seconds=4.0)
    run_id = start_run(store, task_spec(repository=None))
    leases.acquire(store, "shop", "another-tool", 3600, task_id=7)
    time.sleep(settings.stuck_after_seconds + 0.5)  # the task has sat in Preparing past the threshold
    result = pipeline.prepare_for_run(store, settings, run_id)
    assert result.action == "retry" and result.countdown <= settings.stuck_after_seconds / 2
    assert redrive.redrive_stuck(store, settings)["resent"] == []
    # The worker holding the retry died: nothing touches the task any more, and it is re-driven.
    time.sleep(settings.stuck_after_seconds + 0.5)
    assert redrive.redrive_stuck(store, settings)["resent"] == [f"{Step.PREPARE_WORKSPACE}:{run_id}"]
