"""Step messages pushed without send_task: the same message Celery writes, taken by a real worker."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from orchestrator import dispatch
from orchestrator.settings import Settings
from orchestrator.store import TaskExists, TaskStore, connect
from tests.support.api import route_steps_to


def _queued(store: TaskStore, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in store.redis.lrange(queue, 0, -1)]


def _body(message: dict) -> list:
    return json.loads(base64.b64decode(message["body"]))


def test_the_message_is_the_one_send_task_writes(settings: Settings, store: TaskStore, monkeypatch) -> None:
    celery = route_steps_to(settings, monkeypatch)
    celery.send_task(dispatch.FINISH_RUN, args=["run-1"], countdown=5)
    dispatch.send(dispatch.FINISH_RUN, "run-1", countdown=5)
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
def test_a_message_without_eta_matches_send_task_too(settings: Settings, store: TaskStore, monkeypatch,
                                                     args: list) -> None:
    # Messages without an ETA are copied from a per-step template: each must still
    # be the message send_task writes, with its own ids.
    celery = route_steps_to(settings, monkeypatch)
    celery.send_task(dispatch.ADMIT, args=args)
    dispatch.send(dispatch.ADMIT, *args)
    dispatch.send(dispatch.ADMIT, *args)
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


def test_a_step_goes_to_its_routed_queue(settings: Settings, store: TaskStore, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)
    dispatch.send(dispatch.LAUNCH_RUN, "run-2")
    [message] = _queued(store, "deploy")
    assert message["headers"]["task"] == dispatch.LAUNCH_RUN and _body(message)[0] == ["run-2"]


def test_bound_only_to_the_same_server_and_database(settings: Settings, store: TaskStore, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)
    assert dispatch.bound_to(store)
    other_db = settings.redis_url.rsplit("/", 1)[0] + "/9"
    other = TaskStore(connect(other_db))
    assert not dispatch.bound_to(other)


def test_created_and_queued_together_or_not_at_all(settings: Settings, store: TaskStore, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)
    spec = {"service_name": "web", "id": 7, "agent_name": "claude", "dependencies": [3]}
    outgoing = dispatch.prepare(dispatch.ADMIT, "web", 7)
    store.create_task(service="web", task_id=7, agent="claude", spec=spec, dependencies=[3],
                      enqueue=outgoing.enqueue())
    with pytest.raises(TaskExists):
        store.create_task(service="web", task_id=7, agent="claude", spec=spec, enqueue=outgoing.enqueue())
    assert len(_queued(store, "coordination")) == 1
    assert store.dependents_of("web", 3) == [7]


def test_a_duplicate_delivery_is_not_queued(settings: Settings, store: TaskStore, monkeypatch) -> None:
    route_steps_to(settings, monkeypatch)
    outgoing = dispatch.prepare(dispatch.HANDLE_EVENT, "d-2", "issues", {})
    assert store.claim_delivery("d-2", 60, enqueue=outgoing.enqueue())
    assert not store.claim_delivery("d-2", 60, enqueue=outgoing.enqueue())
    assert len(_queued(store, "events")) == 1


def test_a_stopped_redis_is_queue_unavailable(own_redis, settings: Settings, monkeypatch) -> None:
    settings = Settings.from_env({"ORCHESTRATOR_REDIS_URL": own_redis.url})
    route_steps_to(settings, monkeypatch)
    own_redis.stop()
    with pytest.raises(dispatch.QueueUnavailable):
        dispatch.send(dispatch.ADMIT, "web", 1)


def test_a_real_worker_runs_a_pushed_message(settings: Settings, store: TaskStore, monkeypatch,
                                             worker_factory) -> None:
    celery = route_steps_to(settings, monkeypatch)
    worker_factory(queues=("coordination",))
    outgoing = dispatch.prepare("orchestrator.probe")
    task_id = json.loads(outgoing.body)["headers"]["id"]
    store.enqueue(outgoing.queue, outgoing.body)
    assert celery.AsyncResult(task_id).get(timeout=30)["queue"] == "coordination"
