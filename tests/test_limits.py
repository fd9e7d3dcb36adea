"""Caps on tasks per service and contexts per task (#16 finding 7): in the store's
scripts against a real redis-server, through the API, the console and GitHub events."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from orchestrator.github.handlers import handle_event
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import LimitReached, TaskStore, connect
from tests.support.api import AUTH, route_steps_to, valid_task
from tests.support.github import SERVICE, load


def capped(redis_url: str, tasks: int = 0, contexts: int = 0) -> TaskStore:
    return TaskStore(connect(redis_url), max_tasks_per_service=tasks, max_contexts_per_task=contexts)


def make(store: TaskStore, task_id: int, service: str = "web") -> None:
    store.create_task(service=service, task_id=task_id, agent="claude", spec={"id": task_id})


def test_a_full_service_takes_no_more_tasks_and_others_are_not_affected(redis_url: str) -> None:
    store = capped(redis_url, tasks=3)
    for task_id in (1, 2, 3):
        make(store, task_id)
    with pytest.raises(LimitReached) as caught:
        make(store, 4)
    assert caught.value.setting == "max_tasks_per_service" and caught.value.limit == 3
    assert "web already holds 3 tasks" in str(caught.value)
    assert store.get_task("web", 4) is None and store.queue_depths(["coordination"])["coordination"] == 0
    assert [t.id for t in store.list_tasks(service="web")[0]] == [3, 2, 1]  # nothing half-written
    make(store, 1, service="api")  # another service has its own count
    # Ended tasks still count (until the retention sweep deletes them), so the cap bounds the store.
    store.transition("web", 1, Status.CANCELLED, reason="test", actor="test")
    with pytest.raises(LimitReached):
        make(store, 5)


def test_concurrent_submissions_never_overshoot_the_cap(redis_url: str) -> None:
    stores = [capped(redis_url, tasks=5) for _ in range(4)]
    results: list[str] = []
    barrier = threading.Barrier(4)

    def submit(store: TaskStore, first: int) -> None:
        barrier.wait()
        for task_id in range(first, first + 5):
            try:
                make(store, task_id)
                results.append("created")
            except LimitReached:
                results.append("full")

    threads = [threading.Thread(target=submit, args=(s, 100 * i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("created") == 5 and results.count("full") == 15
    assert len(stores[0].list_tasks(service="web", limit=50)[0]) == 5


def test_a_task_takes_at_most_its_contexts_atomically(redis_url: str) -> None:
    store = capped(redis_url, contexts=4)
    make(store, 1)
    outcomes: list[int | str] = []
    barrier = threading.Barrier(8)

    def add(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(capped(redis_url, contexts=4).add_context("web", 1, {"content": f"c{n}"}))
        except LimitReached as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = sorted(o for o in outcomes if isinstance(o, int))
    assert versions == [2, 3, 4, 5]
    assert [o for o in outcomes if isinstance(o, str)] == [
        "task web/1 already holds 4 context documents, the most allowed"
    ] * 4
    assert len(store.contexts("web", 1)) == 4 and store.require_task("web", 1).context_version == 5


def test_a_store_without_caps_keeps_no_count(redis_url: str) -> None:
    store = capped(redis_url)
    for task_id in range(1, 30):
        make(store, task_id)
    for n in range(60):
        store.add_context("web", 1, {"content": str(n)})


# Through the API and the console --------------------------------------------------------------


@pytest.fixture
def small_app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    small = settings.replace(max_tasks_per_service=2, max_contexts_per_task=1)
    celery = route_steps_to(small, monkeypatch)
    yield create_app(small)
    celery.close()


def test_the_api_answers_409_naming_the_variable(small_app: Flask, store: TaskStore) -> None:
    client: FlaskClient = small_app.test_client()
    for task_id in (1, 2):
        assert (
            client.post("/api/v1/pm/tasks", json=valid_task(id=task_id, dependencies=[]), headers=AUTH).status_code
            == 202
        )
    refused = client.post("/api/v1/pm/tasks", json=valid_task(id=3, dependencies=[]), headers=AUTH)
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["code"] == "limit_reached"
    (message,) = body["errors"]["service_name"]
    assert "billing already holds 2 tasks" in message and "ORCHESTRATOR_MAX_TASKS_PER_SERVICE=2" in message
    assert store.get_task("billing", 3) is None
    # The same task again is still 409 task_exists, not the cap: a retried submission learns what it needs.
    assert (
        client.post("/api/v1/pm/tasks", json=valid_task(id=1, dependencies=[]), headers=AUTH).get_json()["code"]
        == "task_exists"
    )

    url = "/api/v1/pm/tasks/billing/1/context"
    assert client.post(url, json={"content": "first"}, headers=AUTH).status_code == 202
    refused = client.post(url, json={"content": "second"}, headers=AUTH)
    assert refused.status_code == 409 and refused.get_json()["code"] == "limit_reached"
    (message,) = refused.get_json()["errors"]["task_id"]
    assert "ORCHESTRATOR_MAX_CONTEXTS_PER_TASK=1" in message
    assert [c["content"] for c in store.contexts("billing", 1)] == ["first"]
    assert store.require_task("billing", 1).context_version == 2


# GitHub events ---------------------------------------------------------------------------------


def test_a_github_event_past_a_cap_is_ignored_with_the_reason(github_settings: Settings) -> None:
    small = github_settings.replace(max_tasks_per_service=1)
    full = capped(github_settings.redis_url, tasks=1)
    make(full, 99, service=SERVICE)
    result = handle_event(full, small, str(uuid.uuid4()), "issues", load("issues/labeled.payload.json"))
    assert result["status"] == "ignored"
    assert "ORCHESTRATOR_MAX_TASKS_PER_SERVICE=1" in result["detail"]
    assert full.get_task(SERVICE, 1) is None
