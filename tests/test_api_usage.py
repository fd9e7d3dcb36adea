"""Usage in the API: on runs, a task's totals, a service's days; the logs as a conversation or raw."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.schemas import TaskViewSchema
from orchestrator.store import TaskStore
from orchestrator.usage.budget import today
from orchestrator.usage.stream import parse_lines
from tests.support.api import AUTH, valid_task
from tests.test_api_tasks import FakeRunner, submit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude_stream"


def record(store: TaskStore, run_id: str, fixture: str, agent: str = "claude", day: str | None = None) -> None:
    usage = parse_lines((FIXTURES / f"{fixture}.jsonl").read_text().splitlines()).usage()
    store.record_usage(run_id, "billing", agent, usage, day=day or today())


def test_runs_show_their_usage_and_the_task_its_totals(client: FlaskClient, store: TaskStore) -> None:
    assert submit(client, valid_task(max_cost_usd=1.5, max_turns=20)).status_code == 202
    first = store.create_run("billing", 7, version=1, attempt=1, now=1.0)
    second = store.create_run("billing", 7, version=1, attempt=2, now=2.0)
    store.create_run("billing", 7, version=1, attempt=3, now=3.0)  # no usage reported
    record(store, first.run_id, "success")
    record(store, second.run_id, "max_budget")
    view = client.get("/api/v1/pm/tasks/billing/7", headers=AUTH).get_json()
    assert not TaskViewSchema().validate(view)
    assert (view["max_cost_usd"], view["max_turns"]) == (1.5, 20)
    shown = view["runs"][0]["usage"]
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "cost_usd", "num_turns", "session_id", "model"):
        assert key in shown
    assert view["runs"][2]["usage"] is None
    total = view["usage"]
    assert total["runs"] == 2 and total["input_tokens"] == 2 * 1204
    assert total["cost_usd"] == pytest.approx(0.1234567 + 1.5213) and total["num_turns"] == 4 + 3


def test_budgets_are_validated(client: FlaskClient) -> None:
    for bad in ({"max_cost_usd": 0}, {"max_cost_usd": -1}, {"max_turns": 0}, {"max_turns": 1.5}):
        response = submit(client, valid_task(**bad))
        assert response.status_code == 400, bad


def test_service_usage_per_day_and_agent(client: FlaskClient, store: TaskStore) -> None:
    submit(client)
    runs = [store.create_run("billing", 7, version=1, attempt=n).run_id for n in (1, 2, 3)]
    record(store, runs[0], "success", day="2026-01-02")
    record(store, runs[1], "success", agent="reviewer", day=today())
    record(store, runs[2], "max_budget", day=today())
    assert store.record_usage(runs[2], "billing", "claude", {"cost_usd": 9.0}, day=today()) is False  # once only
    body = client.get("/api/v1/services/billing/usage", headers=AUTH).get_json()
    assert [d["day"] for d in body["days"]] == [today()]
    day = body["days"][0]
    assert set(day["agents"]) == {"claude", "reviewer"}
    assert day["agents"]["claude"]["cost_usd"] == pytest.approx(1.5213) and day["total"]["runs"] == 2
    assert day["total"]["cost_usd"] == pytest.approx(0.1234567 + 1.5213)
    assert body["total"]["input_tokens"] == 2 * 1204
    older = client.get("/api/v1/services/billing/usage?since=2026-01-01", headers=AUTH)
    if today() < "2027-01-01":  # within the 366 days a request may cover
        assert [d["day"] for d in older.get_json()["days"]][0] == "2026-01-02"
    for bad in ("yesterday", "2999-01-01", "2001-01-01"):
        assert client.get(f"/api/v1/services/billing/usage?since={bad}", headers=AUTH).status_code == 400
    assert client.get("/api/v1/services/billing/usage").status_code == 401
    assert client.get("/api/v1/services/Bad_Name/usage", headers=AUTH).status_code == 400


def test_logs_show_the_conversation_and_raw_gives_the_stream(client: FlaskClient, app: Flask,
                                                              store: TaskStore) -> None:
    lines = (FIXTURES / "denied.jsonl").read_text().splitlines(keepends=True)
    app.extensions["orchestrator"]._runner = FakeRunner(["plain start\n", *lines])
    submit(client)
    store.create_run("billing", 7, version=1, attempt=1)
    text = client.get("/api/v1/pm/tasks/billing/7/logs", headers=AUTH).get_data(as_text=True)
    assert text.startswith("plain start\n● session")
    assert "→ Bash: rm -rf /workspace/billing/.git\n" in text and '"type"' not in text
    assert "permission denied: Bash(rm -rf /workspace/billing/.git)" in text
    followed = client.get("/api/v1/pm/tasks/billing/7/logs?follow=true", headers=AUTH).get_data(as_text=True)
    assert followed == text
    raw = client.get("/api/v1/pm/tasks/billing/7/logs?format=raw", headers=AUTH).get_data(as_text=True)
    assert raw == "plain start\n" + "".join(lines)
    assert client.get("/api/v1/pm/tasks/billing/7/logs?format=yaml", headers=AUTH).status_code == 400
