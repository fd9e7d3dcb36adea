"""Step messages pushed without send_task: the same message Celery writes, taken by a real worker;
and the one choice between queueing with the store write and after it."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from orchestrator import dispatch
from orchestrator.dispatch import Write
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskExists, TaskStore, connect
from tests.support.api import route_steps_to
from orchestrator.celery_dispatch import CeleryDispatcher


def _queued(store: TaskStore, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in store.redis.lrange(queue, 0, -1)]


def _body(message: dict) -> list:
    return json.loads(base64.b64decode(message["body"]))


def test_the_message_is_the_one_send_task_writes(store: TaskStore, settings: Settings, monkeypatch) -> None:
    celery = route_steps_to(settings, monkeypatch)
    celery.send_task(Step.FINISH_RUN, args=["run-1"], countdown=5)
    dispatch.send(Step.FINISH_RUN, "run-1", countdown=5)
    ours, theirs = _queued(store, "coordination")  # LPUSH: the newest first
    assert set(ours) == set(theirs)
    assert set(ours["headers"]) == set(theirs["headers"])
    assert set(ours["properties"]) == set(theirs["properties"])
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    for key in ("content-type", "content-encoding"):
        assert ours[key] == theirs[key]
    for key in ("task", "argsrepr", "kwargsrepr", "retries", "timelimit", "ignore_result"):
        assert ours["headers"][key] == theirs["headers"][key]
    assert ours["headers"]["eta"] and ours["headers"]["root_id"] == ours["headers"]["id"]
    assert _body(ours) == _body(theirs)


@pytest.mark.parametrize("args", [["svc", 7], ["x" * 3000], ["ünïcode ✓", 2**70, None, 1.5, True],
                                  [{"nested": ["dict"]}, "2026-11-26"]],
                         ids=["short", "argsrepr-shortened", "scalars-json-alone-takes", "containers"])
def test_a_message_without_eta_matches_send_task_too(store: TaskStore, settings: Settings, monkeypatch,
                                                     args: list) -> None:
    # Messages without an ETA are copied from a per-step template: each must still
    # be the message send_task writes, with its own ids.
    celery = route_steps_to(settings, monkeypatch)
    celery.send_task(Step.ADMIT, args=args)
    dispatch.send(Step.ADMIT, *args)
    dispatch.send(Step.ADMIT, *args)
    second, ours, theirs = _queued(store, "coordination")
    assert set(ours["headers"]) == set(theirs["headers"])
    assert set(ours["properties"]) == set(theirs["properties"])
    for key in ("task", "argsrepr", "kwargsrepr", "retries", "timelimit", "ignore_result", "eta", "expires",
                "parent_id", "group", "shadow", "lang", "stamps", "stamped_headers", "replaced_task_nesting"):
        assert ours["headers"][key] == theirs["headers"][key], key
    assert _body(ours) == _body(theirs)
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]
    assert second["headers"]["id"] != ours["headers"]["id"]
    assert second["properties"]["delivery_tag"] != ours["properties"]["delivery_tag"]
    for message in (ours, second):
        for value in (message["headers"]["id"], message["properties"]["delivery_tag"]):
            parsed = uuid.UUID(value)
            assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_every_step_goes_to_the_queue_its_step_names(store: TaskStore, settings: Settings, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)
    for step in Step:
        if step is not Step.PROBE:
            dispatch.send(step, "x")
    for queue in ("events", "coordination", "workspace", "deploy"):
        assert sorted(m["headers"]["task"] for m in _queued(store, queue)) == \
            sorted(s.value for s in Step if s.queue == queue and s is not Step.PROBE)
    [message] = [m for m in _queued(store, "deploy") if m["headers"]["task"] == Step.LAUNCH_RUN]
    assert _body(message)[0] == ["x"]


def test_bound_only_to_the_same_server_and_database(store: TaskStore, settings: Settings, monkeypatch) -> None:
    dispatcher = CeleryDispatcher(route_steps_to(settings, monkeypatch))
    assert dispatcher.bound_to(store)
    other_db = settings.redis_url.rsplit("/", 1)[0] + "/9"
    other = TaskStore(connect(other_db))
    assert not dispatcher.bound_to(other)


def _create(store: TaskStore, task_id: int = 7) -> Write:
    spec = {"service_name": "web", "id": task_id, "agent_name": "claude", "dependencies": [3]}
    return Write(store, lambda enqueue: store.create_task(service="web", task_id=task_id, agent="claude", spec=spec,
                                                          dependencies=[3], enqueue=enqueue))


def test_created_and_queued_together_or_not_at_all(store: TaskStore, settings: Settings, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)
    calls: list = []
    real = store._create

    def spy(*args, **kwargs):  # the message must travel inside the store's script
        calls.append(kwargs["args"][7])
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "_create", spy)
    task = dispatch.send(Step.ADMIT, "web", 7, write=_create(store))
    assert task.id == 7 and calls[0]  # the message went with the write
    with pytest.raises(TaskExists):
        dispatch.send(Step.ADMIT, "web", 7, write=_create(store))
    assert len(_queued(store, "coordination")) == 1
    assert store.dependents_of("web", 3) == [7]


def test_on_another_broker_the_write_comes_first_and_the_step_after(store: TaskStore, settings: Settings,
                                                                    own_redis, monkeypatch) -> None:
    # The broker is another Redis: the store write carries no message, the step follows it.
    route_steps_to(Settings.from_env({"ORCHESTRATOR_REDIS_URL": own_redis.url}), monkeypatch)
    broker = TaskStore(connect(own_redis.url))
    task = dispatch.send(Step.ADMIT, "web", 7, write=_create(store))
    assert task.id == 7 and _queued(store, "coordination") == []
    assert [m["headers"]["task"] for m in _queued(broker, "coordination")] == [Step.ADMIT]
    with pytest.raises(TaskExists):  # a refused write sends nothing
        dispatch.send(Step.ADMIT, "web", 7, write=_create(store))
    assert len(_queued(broker, "coordination")) == 1


def test_a_duplicate_delivery_is_not_queued(store: TaskStore, settings: Settings, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)

    def claim() -> Write:
        return Write(store, lambda enqueue: store.claim_delivery("d-2", 60, enqueue=enqueue, pending=("issues", "{}")))

    assert dispatch.send(Step.HANDLE_EVENT, "d-2", "issues", write=claim())
    assert not dispatch.send(Step.HANDLE_EVENT, "d-2", "issues", write=claim())
    assert len(_queued(store, "events")) == 1


def test_a_stopped_redis_is_queue_unavailable(own_redis, settings: Settings, monkeypatch) -> None:
    settings = Settings.from_env({"ORCHESTRATOR_REDIS_URL": own_redis.url})
    route_steps_to(settings, monkeypatch)
    own_redis.stop()
    with pytest.raises(dispatch.QueueUnavailable):
        dispatch.send(Step.ADMIT, "web", 1)


def test_without_an_installed_dispatcher_the_default_is_the_workers_app(settings: Settings) -> None:
    import workers.app

    # The settings fixture routes this test's steps to its own Redis; put back what workers.app registered.
    dispatch.set_default(workers.app.default_dispatcher)
    dispatch.install(None)
    built = dispatch.current()
    assert isinstance(built, CeleryDispatcher) and built.app is workers.app.app
    assert dispatch.current() is built  # built once


def test_a_real_worker_runs_a_pushed_message(store: TaskStore, settings: Settings, monkeypatch,
                                             worker_factory) -> None:
    celery = route_steps_to(settings, monkeypatch)
    worker_factory(queues=("coordination",))
    queue, body = CeleryDispatcher(celery).message(Step.PROBE, [])
    task_id = json.loads(body)["headers"]["id"]
    store.enqueue(queue, body)
    assert celery.AsyncResult(task_id).get(timeout=30)["queue"] == "coordination"
