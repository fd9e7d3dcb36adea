"""The PM task endpoints through Flask's test client, against a real Redis."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.schemas import TaskSummarySchema, TaskViewSchema
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.api import AUTH, TOKEN, route_steps_to, valid_task
from tests.support.redis_server import RedisServer


class FakeRunner:
    """Stands in for the runner's `logs` (the only part the API uses)."""

    def __init__(self, lines: list[str], error: Exception | None = None):
        self.lines = lines
        self.error = error
        self.calls: list[tuple[str, bool, int | None]] = []

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        self.calls.append((run_id, follow, tail))
        if self.error:
            raise self.error
        lines = self.lines[-tail:] if tail else self.lines
        yield from lines


def submit(client: FlaskClient, body: dict | None = None, headers: dict | None = None):
    return client.post("/api/v1/pm/tasks", json=body if body is not None else valid_task(),
                       headers={**AUTH, **(headers or {})})


def test_submit_stores_queues_and_answers_202(client: FlaskClient, store: TaskStore) -> None:
    response = submit(client)
    assert response.status_code == 202
    assert response.headers["Location"] == "/api/v1/pm/tasks/billing/7"
    body = response.get_json()
    assert TaskViewSchema().validate(body) == {}
    assert body["status"] == "Pending" and body["status_reason"] == "submitted"
    assert body["submitted_status"] == "pending"
    assert body["service_name"] == "billing" and body["id"] == 7 and body["agent_name"] == "claude"
    assert body["runs"] == [] and [h["to"] for h in body["history"]] == ["Pending"]
    stored = store.get_task("billing", 7)
    assert stored is not None and stored.spec["title"] == "Add invoice export"
    assert stored.submitted_by.startswith("api:") and "test-token" not in repr(stored)
    assert store.queue_depths(["coordination"])["coordination"] == 1  # the admit step


def test_defaults_are_filled(client: FlaskClient) -> None:
    body = submit(client, {"id": 1, "title": "t", "service_name": "svc", "agent_name": "a",
                           "markdown_files": [{"filename": "a.md", "content": "x", "file_type": "task"}]}).get_json()
    assert body["priority"] == "medium" and body["submitted_status"] == "pending"
    assert body["timeout_seconds"] == 3600 and body["repository"] is None
    assert body["env"] == {} and body["dependencies"] == [] and body["working_directory"] == ""


def test_same_task_twice_is_409(client: FlaskClient) -> None:
    assert submit(client).status_code == 202
    second = submit(client)
    assert second.status_code == 409 and second.get_json()["code"] == "task_exists"


def test_idempotency_key_returns_the_first_answer(client: FlaskClient, store: TaskStore) -> None:
    first = submit(client, headers={"Idempotency-Key": "req-1"})
    store.transition("billing", 7, Status.QUEUED, reason="admitted", actor="test")
    again = submit(client, headers={"Idempotency-Key": "req-1"})
    assert again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # A different key, or none, for the same task is a conflict.
    assert submit(client, headers={"Idempotency-Key": "req-2"}).status_code == 409
    assert submit(client).status_code == 409
    # The same key with another request body is refused.
    other = submit(client, valid_task(id=8), headers={"Idempotency-Key": "req-1"})
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"
    assert store.get_task("billing", 8) is None


def test_idempotency_key_must_be_plain(client: FlaskClient) -> None:
    response = submit(client, headers={"Idempotency-Key": "a b"})
    assert response.status_code == 400 and "Idempotency-Key" in response.get_json()["errors"]


def test_body_limits_and_formats(client: FlaskClient, settings: Settings, app: Flask) -> None:
    big = valid_task(markdown_files=[{"filename": "a.md", "content": "x" * settings.max_request_bytes,
                                      "file_type": "task"}])
    too_large = submit(client, big)
    assert too_large.status_code == 413 and set(too_large.get_json()) == {"code", "message"}
    wrong_type = client.post("/api/v1/pm/tasks", data="id=1", headers={**AUTH, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.get_json()["code"] == "unsupported_media_type"
    for raw in ("{nope", "", "[" * 100_000, "\xff"):
        bad = client.post("/api/v1/pm/tasks", data=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert bad.status_code == 400, raw[:10]
        assert bad.get_json()["code"] == "invalid_json"
    not_object = client.post("/api/v1/pm/tasks", json=[1, 2], headers=AUTH)
    assert not_object.status_code == 400 and not_object.get_json()["errors"] == {"_schema": ["expected a JSON object"]}


def test_undeclared_length_over_the_limit_is_413(client: FlaskClient, settings: Settings) -> None:
    # A chunked upload declares no length: the limit applies while reading.
    body = b'{"id": 1, "title": "' + b"x" * (settings.max_request_bytes + 10) + b'"}'
    response = client.post("/api/v1/pm/tasks", input_stream=io.BytesIO(body),
                           headers={**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413


def test_get_task_shows_runs_and_history(client: FlaskClient, store: TaskStore) -> None:
    submit(client)
    store.transition("billing", 7, Status.QUEUED, reason="admitted", actor="coordination")
    run = store.create_run("billing", 7, version=1, attempt=1, job_name="billing-7-v1-a1")
    store.update_run(run.run_id, phase="Succeeded", started_at=1700000000.0, finished_at=1700000060.0,
                     exit_code=0, outputs={"pull_request_url": "https://github.com/acme/billing/pull/9"})
    response = client.get("/api/v1/pm/tasks/billing/7", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert TaskViewSchema().validate(body) == {}
    assert body["status"] == "Queued" and body["status_reason"] == "admitted"
    assert [h["to"] for h in body["history"]] == ["Pending", "Queued"]
    (shown,) = body["runs"]
    assert shown["job_name"] == "billing-7-v1-a1" and shown["phase"] == "Succeeded" and shown["exit_code"] == 0
    assert shown["pull_request_url"] == "https://github.com/acme/billing/pull/9"
    assert shown["started_at"].startswith("2023-11-14T22:13:20")
    assert client.get("/api/v1/pm/tasks/billing/8", headers=AUTH).status_code == 404
    bad = client.get("/api/v1/pm/tasks/Bad_Name/7", headers=AUTH)
    assert bad.status_code == 400 and "service" in bad.get_json()["errors"]


def test_list_filters_and_pages(client: FlaskClient, store: TaskStore) -> None:
    for task_id in range(1, 6):
        submit(client, valid_task(id=task_id, dependencies=[]))
    submit(client, valid_task(id=1, service_name="web", agent_name="reviewer", dependencies=[]))
    store.transition("billing", 2, Status.CANCELLED, reason="x", actor="test")

    page = client.get("/api/v1/pm/tasks?limit=2", headers=AUTH).get_json()
    assert [(t["service_name"], t["id"]) for t in page["items"]] == [("web", 1), ("billing", 5)]
    assert all(TaskSummarySchema().validate(t) == {} for t in page["items"])
    seen = [(t["service_name"], t["id"]) for t in page["items"]]
    while page["next_cursor"]:
        page = client.get(f"/api/v1/pm/tasks?limit=2&cursor={page['next_cursor']}", headers=AUTH).get_json()
        seen += [(t["service_name"], t["id"]) for t in page["items"]]
    assert seen == [("web", 1)] + [("billing", i) for i in (5, 4, 3, 2, 1)]

    def ids(query: str) -> list[tuple[str, int]]:
        response = client.get(f"/api/v1/pm/tasks?{query}", headers=AUTH)
        assert response.status_code == 200, response.get_json()
        return [(t["service_name"], t["id"]) for t in response.get_json()["items"]]

    assert ids("service=web") == [("web", 1)]
    assert ids("agent=reviewer") == [("web", 1)]
    assert ids("status=Cancelled") == [("billing", 2)]
    assert ids("status=Pending&service=billing") == [("billing", i) for i in (5, 4, 3, 1)]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "status=running", "service=UP",
                                   "cursor=abc", "colour=red"])
def test_list_rejects_bad_queries(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/v1/pm/tasks?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["code"] == "validation_error" and response.get_json()["errors"]


def test_context_bumps_the_version(client: FlaskClient, store: TaskStore) -> None:
    submit(client)
    response = client.post("/api/v1/pm/tasks/billing/7/context", json={"content": "Use UTC dates.", "title": "dates"},
                           headers=AUTH)
    assert response.status_code == 202
    body = response.get_json()
    assert body["context_version"] == 2 and body["status"] == "Pending"
    (doc,) = store.contexts("billing", 7)
    assert doc["content"] == "Use UTC dates." and doc["added_by"].startswith("api:")
    assert client.post("/api/v1/pm/tasks/billing/99/context", json={"content": "x"}, headers=AUTH).status_code == 404
    empty = client.post("/api/v1/pm/tasks/billing/7/context", json={"content": ""}, headers=AUTH)
    assert empty.status_code == 400 and "content" in empty.get_json()["errors"]
    extra = client.post("/api/v1/pm/tasks/billing/7/context", json={"content": "x", "filename": "a.md"},
                        headers=AUTH)
    assert extra.status_code == 400 and "filename" in extra.get_json()["errors"]
    wrong = client.post("/api/v1/pm/tasks/billing/7/context", data="x", headers={**AUTH, "Content-Type": "text/plain"})
    assert wrong.status_code == 415


def test_cancel_and_retry_follow_the_state_machine(client: FlaskClient, store: TaskStore) -> None:
    submit(client)
    assert client.post("/api/v1/pm/tasks/billing/7/retry", headers=AUTH).status_code == 409
    cancelled = client.post("/api/v1/pm/tasks/billing/7/cancel", json={"reason": "not needed"}, headers=AUTH)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "Cancelled" and cancelled.get_json()["status_reason"] == "not needed"
    again = client.post("/api/v1/pm/tasks/billing/7/cancel", headers=AUTH)
    assert again.status_code == 409 and "already ended" in again.get_json()["message"]
    retried = client.post("/api/v1/pm/tasks/billing/7/retry", headers=AUTH)
    assert retried.status_code == 202 and retried.get_json()["status"] == "Pending"
    assert client.post("/api/v1/pm/tasks/billing/8/cancel", headers=AUTH).status_code == 404
    assert client.post("/api/v1/pm/tasks/billing/8/retry", headers=AUTH).status_code == 404
    bad = client.post("/api/v1/pm/tasks/billing/7/cancel", json={"why": "x"}, headers=AUTH)
    assert bad.status_code == 400


def test_logs_of_the_latest_run(client: FlaskClient, app: Flask, store: TaskStore, settings: Settings) -> None:
    runner = FakeRunner(["one\n", "two", f"token {settings.api_tokens[0]} leaked\n"])
    app.extensions["orchestrator"]._runner = runner
    assert client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH).status_code == 404
    submit(client)
    none_yet = client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH)
    assert none_yet.status_code == 404 and none_yet.get_json()["code"] == "no_run"
    store.create_run("billing", 7, version=1, attempt=1, now=1.0)
    latest = store.create_run("billing", 7, version=2, attempt=1, now=2.0)

    response = client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "one\ntwo\ntoken *** leaked\n"
    assert response.headers["X-Run-Id"] == latest.run_id
    assert client.get("/api/v1/pm/tasks/billing/7/logs?tail=1", headers=AUTH).get_data(as_text=True) == \
        "token *** leaked\n"
    streamed = client.get("/api/v1/pm/tasks/billing/7/logs?follow=true&tail=2", headers=AUTH)
    assert streamed.is_streamed and streamed.get_data(as_text=True) == "two\ntoken *** leaked\n"
    assert runner.calls == [(latest.run_id, False, None), (latest.run_id, False, 1),
                            (latest.run_id, True, 2)]
    assert client.get("/api/v1/pm/tasks/billing/7/logs?tail=0", headers=AUTH).status_code == 400
    assert client.get("/api/v1/pm/tasks/billing/7/logs?follow=maybe", headers=AUTH).status_code == 400

    app.extensions["orchestrator"]._runner = FakeRunner([], error=FileNotFoundError("gone"))
    assert client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH).get_json()["code"] == "no_logs"


def test_unexpected_error_is_a_500_envelope_with_the_logged_request_id(
    client: FlaskClient, app: Flask, store: TaskStore, caplog: pytest.LogCaptureFixture
) -> None:
    app.extensions["orchestrator"]._runner = FakeRunner([], error=RuntimeError("secret internals"))
    submit(client)
    store.create_run("billing", 7, version=1, attempt=1)
    with caplog.at_level(logging.INFO, logger="orchestrator.api"):
        response = client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH)
    assert response.status_code == 500
    body = response.get_json()
    rid = response.headers["X-Request-Id"]
    assert body["code"] == "internal_error" and rid in body["message"] and "secret internals" not in body["message"]
    assert any(getattr(r, "request_id", None) == rid and r.exc_info for r in caplog.records)


def test_one_json_log_line_per_request(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.logs import JsonFormatter

    with caplog.at_level(logging.INFO, logger="orchestrator.api.access"):
        response = client.get("/api/v1/pm/tasks?limit=1&secret=x", headers={**AUTH, "X-Request-Id": "abc-123"})
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "orchestrator.api.access"]
    assert len(lines) == 1
    (line,) = lines
    assert response.headers["X-Request-Id"] == "abc-123" == line["request_id"]
    assert line["route"] == "/api/v1/pm/tasks" and line["status"] == 400 and line["method"] == "GET"
    assert line["path"] == "/api/v1/pm/tasks" and "secret" not in json.dumps(line)
    generated = client.get("/health", headers={"X-Request-Id": "bad id;x"}).headers["X-Request-Id"]
    assert generated != "bad id;x" and len(generated) == 16


def test_redis_outage_answers_503_then_recovers(own_redis: RedisServer, settings: Settings) -> None:
    app = create_app(settings.replace(redis_url=own_redis.url))
    client = app.test_client()
    assert submit(client, valid_task(id=1)).status_code == 202

    own_redis.stop()
    down = submit(client, valid_task(id=2))
    assert down.status_code == 503 and down.headers["Retry-After"]
    assert down.get_json()["code"] == "unavailable"
    assert client.get("/api/v1/pm/tasks/billing/1", headers=AUTH).status_code == 503
    assert client.get("/api/v1/pm/tasks", headers=AUTH).status_code == 503
    assert client.post("/api/v1/pm/tasks/billing/1/cancel", headers=AUTH).status_code == 503
    assert client.get("/ready").status_code == 503

    own_redis.start()
    assert client.get("/ready").status_code == 200
    assert submit(client, valid_task(id=2)).status_code == 202
    stored = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        assert stored.exists("orch:task:billing:1") and stored.exists("orch:task:billing:2")
    finally:
        stored.close()


def test_a_full_redis_answers_503_and_keeps_what_it_had(own_redis: RedisServer, settings: Settings) -> None:
    """Redis at maxmemory with noeviction (the chart's policy) refuses writes: the API says 503, not 500."""
    app = create_app(settings.replace(redis_url=own_redis.url))
    client = app.test_client()
    assert submit(client, valid_task(id=1)).status_code == 202
    raw = redis.Redis.from_url(own_redis.url)
    try:
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", 1)  # below what is used already: every write is refused
        full = submit(client, valid_task(id=2))
        assert full.status_code == 503 and full.headers["Retry-After"]
        assert full.get_json()["code"] == "unavailable"
        assert client.post("/api/v1/pm/tasks/billing/1/cancel", headers=AUTH).status_code == 503
        raw.config_set("maxmemory", 0)
        assert client.get("/api/v1/pm/tasks/billing/1", headers=AUTH).get_json()["status"] != "Cancelled"
        assert submit(client, valid_task(id=2)).status_code == 202
    finally:
        raw.close()


# Logs of runs that have no output (yet, or any more), through the real runners -------------


from orchestrator.runners.base import AgentSpec, RunRequest  # noqa: E402
from orchestrator.runners.kubernetes import KubernetesRunner  # noqa: E402
from orchestrator.runners.local import LocalRunner  # noqa: E402
from tests.support.kube_emulator import Fault, KubeEmulator  # noqa: E402


def _no_logs(client: FlaskClient, follow: bool) -> None:
    response = client.get(f"/api/v1/pm/tasks/billing/7/logs{'?follow=true' if follow else ''}", headers=AUTH)
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["code"] == "no_logs"


def test_kubernetes_logs_before_a_pod_runs_and_after_the_job_ttl_are_404(
    client: FlaskClient, app: Flask, store: TaskStore, kube_runner: KubernetesRunner, emulator: KubeEmulator,
    tmp_path,
) -> None:
    app.extensions["orchestrator"]._runner = kube_runner
    submit(client)
    run_id = store.create_run("billing", 7, version=1, attempt=1).run_id
    for follow in (False, True):  # Preparing/Launching: no Job yet
        _no_logs(client, follow)
    kube_runner.launch(RunRequest(run_id=run_id, service="billing", task_id=7, version=1, attempt=1,
                                  agent=AgentSpec(name="claude", image="img:1", command=("claude",)),
                                  workspace_dir=tmp_path))
    for follow in (False, True):  # the Job exists, its pod does not yet
        _no_logs(client, follow)
    pod = emulator.start_pod(run_id, phase="Pending")["metadata"]["name"]
    for follow in (False, True):
        _no_logs(client, follow)
    emulator.set_pod_status(pod, {"phase": "Running"})
    emulator.append_log(pod, "hello")
    assert client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH).get_data(as_text=True) == "hello\n"
    emulator.delete("jobs", run_id)  # ttlSecondsAfterFinished removed the Job and its pod
    emulator.delete("pods", pod)
    for follow in (False, True):
        _no_logs(client, follow)


def test_kubernetes_api_failures_are_503(
    client: FlaskClient, app: Flask, store: TaskStore, kube_runner: KubernetesRunner, emulator: KubeEmulator,
) -> None:
    app.extensions["orchestrator"]._runner = kube_runner
    submit(client)
    store.create_run("billing", 7, version=1, attempt=1)
    for follow in (False, True):
        emulator.faults.append(Fault(status=500, path_contains="/pods", times=10))
        response = client.get(f"/api/v1/pm/tasks/billing/7/logs{'?follow=true' if follow else ''}", headers=AUTH)
        emulator.faults.clear()
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.get_json()["code"] == "unavailable"


def test_local_logs_before_the_run_wrote_any_are_404(client: FlaskClient, app: Flask, store: TaskStore,
                                                    settings: Settings) -> None:
    runner = LocalRunner(settings)
    app.extensions["orchestrator"]._runner = runner
    submit(client)
    run_id = store.create_run("billing", 7, version=1, attempt=1).run_id
    for follow in (False, True):  # Preparing: nothing of the run on disk
        _no_logs(client, follow)
    run_dir = runner.run_dir(run_id)  # launched, the agent has not written yet
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"command": ["true"], "cwd": "/", "timeout": 60,
                                                    "launched_at": 1.0}))
    _no_logs(client, False)


def test_a_redis_timeout_while_adding_context_is_store_unavailable(own_redis: RedisServer) -> None:
    # The API answers StoreUnavailable with 503; a bare redis.TimeoutError would be a 500.
    import os
    import signal

    from orchestrator.store import StoreUnavailable, connect

    store = TaskStore(connect(own_redis.url, timeout=0.5))
    store.create_task(service="billing", task_id=7, agent="claude", spec={"title": "t"})
    os.kill(own_redis.process.pid, signal.SIGSTOP)  # answers nothing: the client's read times out
    try:
        with pytest.raises(StoreUnavailable):
            store.add_context("billing", 7, {"content": "more"})
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)


def test_a_whole_log_is_streamed_not_loaded(client: FlaskClient, app: Flask, store: TaskStore,
                                            settings: Settings) -> None:
    import tracemalloc

    runner = LocalRunner(settings)
    app.extensions["orchestrator"]._runner = runner
    submit(client)
    run_id = store.create_run("billing", 7, version=1, attempt=1).run_id
    run_dir = runner.run_dir(run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"command": ["true"], "cwd": "/", "timeout": 60}))
    block = b"".join(b"line %07d of the agent's chatter\n" % i for i in range(30000))  # about 1 MB
    with open(run_dir / "output.log", "wb") as log:
        for _ in range(10):
            log.write(block)
    tracemalloc.start()
    try:
        response = client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH, buffered=False)
        assert response.status_code == 200
        size = sum(len(chunk) for chunk in response.response)
        response.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 10 * len(block)
    assert peak < 2 << 20, peak  # the log is 10 MB


def _follow_readers(run_id: str) -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == f"log-follow-{run_id}"]


def _abandon_a_follow(client: FlaskClient, run_id: str) -> None:
    """Follow, read the status line and one line, then leave while the run is silent."""
    import time

    response = client.get("/api/v1/pm/tasks/billing/7/logs?follow=true", headers=AUTH, buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    while not next(chunks).strip():
        pass
    assert _follow_readers(run_id)
    response.close()
    deadline = time.monotonic() + 3
    while _follow_readers(run_id):
        assert time.monotonic() < deadline, "the follow's reader still waits on a silent run"
        time.sleep(0.05)


def test_an_abandoned_kubernetes_follow_stops_reading(
    client: FlaskClient, app: Flask, store: TaskStore, kube_runner: KubernetesRunner, emulator: KubeEmulator,
    tmp_path,
) -> None:
    app.extensions["orchestrator"]._runner = kube_runner
    submit(client)
    run_id = store.create_run("billing", 7, version=1, attempt=1).run_id
    kube_runner.launch(RunRequest(run_id=run_id, service="billing", task_id=7, version=1, attempt=1,
                                  agent=AgentSpec(name="claude", image="img:1", command=("claude",)),
                                  workspace_dir=tmp_path))
    pod = emulator.start_pod(run_id)["metadata"]["name"]
    emulator.append_log(pod, "thinking")
    _abandon_a_follow(client, run_id)


def test_an_abandoned_local_follow_stops_reading(client: FlaskClient, app: Flask, store: TaskStore,
                                                 settings: Settings) -> None:
    runner = LocalRunner(settings)
    app.extensions["orchestrator"]._runner = runner
    submit(client)
    run_id = store.create_run("billing", 7, version=1, attempt=1).run_id
    run_dir = runner.run_dir(run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"command": ["true"], "cwd": "/", "timeout": 60}))
    (run_dir / "status.json").write_text(json.dumps({"phase": "Running", "pid": 1}))
    (run_dir / "output.log").write_text("thinking\n")
    _abandon_a_follow(client, run_id)


def test_a_followed_secret_split_across_two_lines_is_masked(client: FlaskClient, app: Flask, store: TaskStore,
                                                            settings: Settings) -> None:
    token = settings.api_tokens[0]
    app.extensions["orchestrator"]._runner = FakeRunner(["start", f"key {token[:4]}", f"{token[4:]} end"])
    submit(client)
    store.create_run("billing", 7, version=1, attempt=1)
    streamed = client.get("/api/v1/pm/tasks/billing/7/logs?follow=true", headers=AUTH).get_data(as_text=True)
    assert token[:4] not in streamed.replace("start", "") and token[4:] not in streamed
    assert streamed.startswith("start\nkey ") and streamed.endswith(" end\n")


def test_an_idempotency_key_belongs_to_the_token_that_sent_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, store: TaskStore
) -> None:
    """Another token's key is another key: it neither replays nor refuses a request it never saw."""
    celery = route_steps_to(settings, monkeypatch)
    try:
        client = create_app(settings.replace(api_tokens=(TOKEN, "other-token"))).test_client()
        assert submit(client, valid_task(id=7), headers={"Idempotency-Key": "shared"}).status_code == 202
        other = {"Authorization": "Bearer other-token", "Idempotency-Key": "shared"}
        answer = client.post("/api/v1/pm/tasks", json=valid_task(id=8), headers=other)
        assert answer.status_code == 202 and "Idempotent-Replayed" not in answer.headers
        assert store.get_task("billing", 8) is not None
    finally:
        celery.close()
