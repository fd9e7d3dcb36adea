"""GET /metrics: request counts and latency, tasks by status, queue depths."""

from __future__ import annotations

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.api import AUTH, route_steps_to, valid_task
from tests.support.redis_server import RedisServer


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_tasks_and_queues(store: TaskStore, settings: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    route_steps_to(settings, monkeypatch)
    client = create_app(settings).test_client()
    assert client.post("/api/v1/pm/tasks", json=valid_task(), headers=AUTH).status_code == 202
    assert client.post("/api/v1/pm/tasks", json=valid_task(), headers=AUTH).status_code == 409
    client.get("/no/such/path")
    store.redis.lpush("deploy", "m1", "m2")
    store.redis.lpush("deploy\x06\x169", "m3")

    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = _samples(response.get_data(as_text=True))
    route = ("route", "/api/v1/pm/tasks")
    assert samples[("orchestrator_api_requests_total", (("method", "POST"), route, ("status", "202")))] == 1
    assert samples[("orchestrator_api_requests_total", (("method", "POST"), route, ("status", "409")))] == 1
    assert samples[("orchestrator_api_requests_total", (("method", "GET"), ("route", "unmatched"),
                                                        ("status", "404")))] == 1
    assert samples[("orchestrator_api_request_duration_seconds_count", (("method", "POST"), route))] == 2
    assert samples[("orchestrator_tasks", (("status", "Pending"),))] == 1
    assert samples[("orchestrator_tasks", (("status", "Running"),))] == 0
    assert samples[("orchestrator_queue_depth", (("queue", "deploy"),))] == 3
    assert samples[("orchestrator_queue_depth", (("queue", "coordination"),))] == 1
    assert samples[("orchestrator_store_up", ())] == 1


def test_metrics_answer_while_redis_is_down(own_redis: RedisServer, settings: Settings) -> None:
    client = create_app(settings.replace(redis_url=own_redis.url)).test_client()
    own_redis.stop()
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = _samples(response.get_data(as_text=True))
    assert samples[("orchestrator_store_up", ())] == 0
    assert not any(name == "orchestrator_tasks" for name, _ in samples)


def test_queue_depths_count_every_priority_list(store: TaskStore) -> None:
    client: redis.Redis = store.redis
    client.rpush("events", "a")
    client.rpush("workspace\x06\x163", "b", "c")
    assert store.queue_depths(["events", "workspace", "deploy"]) == {"events": 1, "workspace": 2, "deploy": 0}


def test_unknown_methods_share_one_label(settings: Settings) -> None:
    """Any token is a method to gunicorn; each new label value would be a new series kept forever."""
    client = create_app(settings).test_client()
    for method in ("BREW", "WHEN", "PROPFIND"):
        client.open("/health", method=method)
    client.get("/health")
    client.get("/health")
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    methods: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "orchestrator_api_requests_total":
            methods[dict(labels)["method"]] = methods.get(dict(labels)["method"], 0) + value
    assert methods == {"other": 3, "GET": 2}


def test_the_workspace_disk_use_of_the_last_sweep_is_exported(store: TaskStore, settings: Settings) -> None:
    """The sweep writes it to Redis (orchestrator/workspace/cleanup.py); every API pod reports that one figure."""
    store.set_gauge("workspace_disk_bytes", 5000)
    store.set_gauge("workspace_disk_bytes:shop", 3000)
    samples = _samples(create_app(settings).test_client().get("/metrics").get_data(as_text=True))
    assert samples[("orchestrator_workspace_disk_bytes", ())] == 5000
    assert samples[("orchestrator_workspace_service_disk_bytes", (("service", "shop"),))] == 3000
