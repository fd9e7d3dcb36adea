"""Followed logs under real gunicorn: they stream, end, are capped, and never starve health or webhooks."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.gunicorn import Gunicorn

LOGS = "/api/v1/pm/tasks/billing/7/logs?follow=true"
AGENT = """
import pathlib, sys, time
print("first line", flush=True)
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.05)
print("last line", flush=True)
"""


@pytest.fixture
def running(store: TaskStore, settings: Settings, tmp_path: Path) -> Iterator[Path]:
    """Task billing/7 with a local run that printed one line and waits for the returned file to end."""
    store.create_task(service="billing", task_id=7, agent="claude", spec={"title": "export"})
    run_id = store.create_run("billing", 7, version=1, attempt=1).run_id
    (tmp_path / "agent.py").write_text(AGENT)
    stop = tmp_path / "stop"
    workspace = settings.workspace_root / "billing"
    workspace.mkdir(parents=True)
    runner = LocalRunner(settings)
    runner.launch(RunRequest(run_id=run_id, service="billing", task_id=7, version=1, attempt=1,
                             agent=AgentSpec(name="claude", image="",
                                             command=(sys.executable, str(tmp_path / "agent.py"), str(stop))),
                             workspace_dir=workspace))
    deadline = time.monotonic() + 20
    while b"first line" not in _read(runner.run_dir(run_id) / "output.log"):
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.05)
    yield stop
    stop.touch()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


@pytest.fixture
def serve(base_env: dict[str, str], tmp_path: Path) -> Iterator:
    started: list[Gunicorn] = []

    def start(env: dict[str, str] | None = None, **gunicorn_env: str) -> Gunicorn:
        server = Gunicorn({**base_env, **(env or {})}, tmp_path, **gunicorn_env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def _follow_request(token: str) -> bytes:
    return (f"GET {LOGS} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n").encode()


def _health_within(server: Gunicorn, seconds: float) -> None:
    started = time.monotonic()
    status, _, _ = server.request("GET", "/health", timeout=seconds)
    assert status == 200 and time.monotonic() - started < seconds


def test_a_follow_prints_each_line_as_the_run_writes_it(serve, running: Path) -> None:
    server = serve(GUNICORN_WORKERS="1", GUNICORN_THREADS="4")
    conn, response = server.open("GET", LOGS, {"Authorization": "Bearer test-token"}, timeout=10)
    try:
        assert response.status == 200
        assert response.readline() == b"first line\n"  # the run goes on: nothing drained the stream first
        assert not running.exists()
        running.touch()
        assert response.readline() == b"last line\n"
        assert response.read() == b""  # the run ended, so did the stream
    finally:
        conn.close()
    time.sleep(0.5)
    (line,) = [r for r in server.access_lines() if r["route"].endswith("/logs")]
    assert line["status"] == 200 and line["length"] == len(b"first line\nlast line\n")


def test_dropped_follows_neither_starve_health_and_webhooks_nor_linger(serve, running: Path) -> None:
    # Twelve follows (four for each of three tokens) against 2 workers of 4 threads, dropped after 3 s.
    server = serve({"ORCHESTRATOR_API_TOKENS": "token-a,token-b,token-c"}, GUNICORN_WORKERS="2",
                   GUNICORN_THREADS="4")
    clients: list[socket.socket] = []
    for token in ("token-a", "token-b", "token-c") * 4:
        client = server.connect()
        client.sendall(_follow_request(token))
        clients.append(client)
    time.sleep(3)
    _health_within(server, 3)
    for client in clients:
        client.close()
    _health_within(server, 3)
    started = time.monotonic()
    status, _, _ = server.request("POST", "/webhooks/github", body={"zen": "x"}, timeout=3)
    assert status in {400, 401, 403} and time.monotonic() - started < 3
    # Every follow that was streaming noticed its client had gone and ended (its access line
    # is written when the stream ends), well before the run did.
    deadline = time.monotonic() + 8
    while True:
        lines = [r for r in server.access_lines() if r["route"].endswith("/logs")]
        if len(lines) == 12:
            break
        assert time.monotonic() < deadline, f"{12 - len(lines)} follows still stream after their clients left"
        time.sleep(0.2)
    assert not running.exists()
    assert {r["status"] for r in lines} <= {200, 429, 503} and any(r["status"] == 200 for r in lines)


def test_follows_are_capped_per_token_and_per_process(serve, running: Path) -> None:
    server = serve({"ORCHESTRATOR_API_TOKENS": "token-a,token-b", "ORCHESTRATOR_LOG_FOLLOWS_PER_TOKEN": "2"},
                   GUNICORN_WORKERS="1", GUNICORN_THREADS="4")
    held = [server.open("GET", LOGS, {"Authorization": "Bearer token-a"}) for _ in range(2)]
    try:
        assert [response.status for _, response in held] == [200, 200]
        status, headers, body = server.request("GET", LOGS, headers={"Authorization": "Bearer token-a"})
        assert status == 429 and headers["Retry-After"]
        assert b'"code":"too_many_follows"' in body.replace(b" ", b"")
        # Another token is within its own cap, but this process streams half its threads already.
        status, headers, body = server.request("GET", LOGS, headers={"Authorization": "Bearer token-b"})
        assert status == 503 and headers["Retry-After"] and b"unavailable" in body
        _health_within(server, 3)
    finally:
        for conn, _ in held:
            conn.close()
    deadline = time.monotonic() + 10  # the leases and slots went with their clients
    while True:
        conn, response = server.open("GET", LOGS, {"Authorization": "Bearer token-a"})
        conn.close()
        if response.status == 200:
            break
        assert time.monotonic() < deadline, response.status
        time.sleep(0.5)


def test_a_follow_ends_after_the_maximum_duration(serve, running: Path) -> None:
    server = serve({"ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS": "2"}, GUNICORN_WORKERS="1", GUNICORN_THREADS="4")
    started = time.monotonic()
    conn, response = server.open("GET", LOGS, {"Authorization": "Bearer test-token"}, timeout=15)
    try:
        body = response.read()
    finally:
        conn.close()
    assert time.monotonic() - started < 10
    assert body.startswith(b"first line\n") and b"ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS" in body
    assert not running.exists()  # the run had not ended


def test_a_follow_lease_of_a_crashed_process_lapses(store: TaskStore) -> None:
    assert store.acquire_follow("owner", "one", lease_seconds=0.3, limit=1)
    assert not store.acquire_follow("owner", "two", lease_seconds=0.3, limit=1)
    assert store.acquire_follow("owner", "one", lease_seconds=0.3, limit=1)  # a renewal
    time.sleep(0.4)  # "one" was never released: its process died
    assert store.acquire_follow("owner", "two", lease_seconds=0.3, limit=1)
    store.release_follow("owner", "two")
    assert store.acquire_follow("owner", "three", lease_seconds=0.3, limit=1)
