"""Lists read summaries only: what Redis is asked for while the API and the console list 20 huge tasks (#16 item 7).

A real redis-server; MONITOR records every command the list requests send, so
the test says exactly which fields were read, not only how much memory it took.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.store.records import SUMMARY_FIELDS
from tests.support.api import AUTH, TOKEN, route_steps_to

BODY = "x" * (2 << 20)  # 2 MB of documents per task; 20 of them is 40 MB
SPEC = {"title": "A huge task", "description": BODY, "details": BODY[:100_000], "priority": "medium"}


def huge_tasks(store: TaskStore, count: int = 20, service: str = "big") -> None:
    for task_id in range(1, count + 1):
        store.create_task(service=service, task_id=task_id, agent="claude", spec={**SPEC, "id": task_id})
        run = store.create_run(service, task_id, version=1, attempt=1)
        # A run's prompt is built from the documents: as large as they are.
        store.update_run(run.run_id, prompt=BODY, outcome="changes", usage={"cost_usd": 0.25})
        store.update_task(service, task_id, current_run=run.run_id)


@pytest.fixture
def monitored(redis_url: str) -> Iterator[Callable[[Callable[[], Any]], list[str]]]:
    """Runs a callable and returns the commands Redis received meanwhile (MONITOR, a connection of its own)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def record(action: Callable[[], Any]) -> list[str]:
        seen: list[str] = []
        ready = threading.Event()

        def listen() -> None:
            with client.monitor() as monitor:
                ready.set()
                for entry in monitor.listen():
                    command = entry["command"]
                    if command == "ECHO monitored-end":
                        return
                    seen.append(command)

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        ready.wait(5)
        action()
        client.echo("monitored-end")
        thread.join(10)
        return seen

    yield record
    client.close()


@pytest.fixture
def list_app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    celery = route_steps_to(settings, monkeypatch)
    yield create_app(settings.replace(session_secret="list-test-secret", api_tokens=(TOKEN,)))
    celery.close()


def signed_in(client: FlaskClient) -> FlaskClient:
    client.get("/sign-in")
    with client.session_transaction() as session:
        csrf = session["csrf_token"]
    answer = client.post("/sign-in", data={"token": TOKEN, "csrf_token": csrf})
    assert answer.status_code == 303
    return client


def assert_summaries_only(commands: list[str]) -> None:
    reads = [c for c in commands if c.split(" ", 1)[0] in {"HGETALL", "HGET", "HVALS", "HMGET", "GET"}]
    assert reads, "nothing was read"
    assert not [c for c in reads if c.startswith(("HGETALL", "HVALS"))], [c[:120] for c in reads]
    for command in reads:
        assert not {"spec", "prompt", "inputs"} & set(command.split(" ")[2:]), command[:200]


def test_the_api_list_reads_summary_fields_only(list_app: Flask, store: TaskStore, monitored) -> None:
    huge_tasks(store)
    client = list_app.test_client()
    answers: list[Any] = []
    commands = monitored(lambda: answers.append(client.get("/api/v1/pm/tasks?limit=20", headers=AUTH)))
    assert answers[0].status_code == 200
    items = answers[0].get_json()["items"]
    assert [t["id"] for t in items] == list(range(20, 0, -1))
    assert items[0]["title"] == "A huge task" and items[0]["submitted_status"] == "pending"
    assert_summaries_only(commands)
    task_reads = [c for c in commands if c.startswith("HMGET orch:task:")]
    assert len(task_reads) == 20, commands
    assert all(c.split(" ")[2:] == list(SUMMARY_FIELDS) for c in task_reads)


def test_the_console_tasks_page_reads_summary_fields_and_the_rows_run_fields_only(
    list_app: Flask, store: TaskStore, monitored
) -> None:
    huge_tasks(store)
    client = signed_in(list_app.test_client())
    answers: list[Any] = []
    commands = monitored(lambda: answers.append(client.get("/?service=big&limit=20")))
    page = answers[0].get_data(as_text=True)
    assert answers[0].status_code == 200 and page.count("A huge task") == 20
    assert "$0.25" in page and "changes" in page  # the latest run's cost and outcome are still shown
    assert_summaries_only(commands)


def test_a_page_of_huge_tasks_costs_what_a_page_of_small_ones_does(list_app: Flask, store: TaskStore) -> None:
    huge_tasks(store)
    client = list_app.test_client()
    client.get("/api/v1/pm/tasks?limit=20", headers=AUTH)  # warm: imports, scripts, connections
    tracemalloc.start()
    try:
        answer = client.get("/api/v1/pm/tasks?limit=20", headers=AUTH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200 and len(answer.get_json()["items"]) == 20
    assert peak < 2 << 20, f"listing 20 tasks of 2 MB each peaked at {peak / 2**20:.1f} MiB"


def test_a_record_stored_before_summaries_gets_its_title_once(store: TaskStore, monitored) -> None:
    store.create_task(service="old", task_id=1, agent="claude", spec={"title": "Written long ago", "status": "done"})
    store.redis.hdel("orch:task:old:1", "title", "submitted_status")
    [first], _ = store.list_summaries(service="old")
    assert (first.title, first.submitted_status) == ("Written long ago", "done")
    commands = monitored(lambda: store.list_summaries(service="old"))
    assert not [c for c in commands if "spec" in c.split(" ")]  # kept beside the record: read once only


def test_filters_walk_the_smallest_index_and_a_title_search_is_bounded(store: TaskStore) -> None:
    for task_id in range(1, 41):
        store.create_task(
            service="web" if task_id % 2 else "api",
            task_id=task_id,
            agent="claude",
            spec={"title": "needle here" if task_id in (3, 37) else f"task {task_id}"},
        )
    store.transition("web", 5, "Queued", reason="", actor="t")
    queued, cursor = store.list_summaries(service="web", status="Queued", limit=5)
    assert [t.id for t in queued] == [5] and cursor is None
    found, cursor = store.list_summaries(title_contains="NEEDLE", limit=5)
    assert [t.id for t in found] == [37, 3] and cursor is None
    page, cursor = store.list_summaries(service="api", limit=3)
    assert [t.id for t in page] == [40, 38, 36] and cursor == str(page[-1].seq)


def test_a_title_search_looks_at_a_bounded_number_of_tasks_per_page(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.store import listing

    monkeypatch.setattr(listing, "TITLE_SCAN_MAX", 10)
    for task_id in range(1, 31):
        title = "Needle" if task_id in (2, 25) else f"task {task_id}"
        store.create_task(service="web", task_id=task_id, agent="claude", spec={"title": title})
    pages, cursor, seen = 0, None, []
    while True:
        found, cursor = store.list_summaries(title_contains="needle", limit=5, cursor=cursor)
        seen += [t.id for t in found]
        pages += 1
        if cursor is None:
            break
    assert seen == [25, 2] and pages == 3  # 30 tasks, 10 looked at per page
    assert store.list_summaries(title_contains="needle", agent="codex")[0] == []
