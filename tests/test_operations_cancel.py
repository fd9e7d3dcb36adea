"""Cancelling a task that the pipeline moves on at the same moment."""

from __future__ import annotations

import pytest

from orchestrator import operations
from orchestrator.store import TaskStore
from orchestrator.steps import Step
from tests.support.runs import Sent


def test_cancel_wins_over_a_concurrent_pipeline_move(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Sent().install().flat
    store.create_task(service="web", task_id=1, agent="a", spec={})
    store.transition("web", 1, "Queued", reason="", actor="t")
    real_get = store.require_task
    moved = []

    def racing_get(service: str, task_id: int):
        task = real_get(service, task_id)
        if not moved:  # the pipeline admits the task right after the cancel read it
            moved.append(True)
            store.transition("web", 1, "Preparing", reason="admitted", actor="coordination",
                             fields={"current_run": "web-1-v1-a1"})
        return task

    monkeypatch.setattr(store, "require_task", racing_get)
    task = operations.cancel_task(store, "web", 1, actor="pm")
    assert task.status == "Cancelled"
    assert (Step.CANCEL_RUN, "web-1-v1-a1") in sent  # the run admitted meanwhile is stopped too


def test_cancel_of_an_ended_task_is_refused(store: TaskStore) -> None:
    store.create_task(service="web", task_id=2, agent="a", spec={})
    store.transition("web", 2, "Cancelled", reason="", actor="t")
    with pytest.raises(operations.OperationRefused, match="already ended"):
        operations.cancel_task(store, "web", 2, actor="pm")


def test_the_cancel_and_its_cancel_run_are_one_write(store: TaskStore, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API process that dies right after recording a cancel must not leave the run's agent working:
    the cancel_run message is pushed by the same script that records Cancelled (issue #22, the API cell)."""
    from orchestrator.celery_app import create_celery
    from orchestrator.celery_dispatch import CeleryDispatcher
    from orchestrator.store import broker

    celery = create_celery(settings)
    dispatcher = CeleryDispatcher(celery)
    assert dispatcher.bound_to(store)

    def died(*args, **kwargs):  # a publish after the write never happens: the process is gone
        raise SystemExit("the API process died after the write")

    monkeypatch.setattr(dispatcher, "_publish", died)
    store.create_task(service="web", task_id=3, agent="a", spec={})
    for status in ("Queued", "Preparing", "Launching", "Running"):
        store.transition("web", 3, status, reason="", actor="t", fields={"current_run": "web-3-v1-a1"})
    with pytest.raises(SystemExit):  # at the first publish after the write
        operations.cancel_task(store, "web", 3, actor="pm", dispatcher=dispatcher)
    queued = store.redis.lrange(broker.queue_key(Step.CANCEL_RUN.queue), 0, -1)
    assert any("web-3-v1-a1" in message and "cancel_run" in message for message in queued)
    assert store.require_task("web", 3).status == "Cancelled"
    celery.close()
