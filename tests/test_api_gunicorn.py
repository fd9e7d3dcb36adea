"""End to end: the API under gunicorn with its own config file, driven over HTTP."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.store import TaskStore
from tests.support.api import TOKEN, valid_task
from tests.support.redis_server import free_port


def _request(port: int, method: str, path: str, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_gunicorn_serves_a_submission(base_env: dict[str, str], store: TaskStore, tmp_path: Path) -> None:
    port = free_port()
    env = {**base_env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = (tmp_path / "gunicorn.out").open("wb")
    err = (tmp_path / "gunicorn.err").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"],
                               env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = _request(port, "GET", "/health")
                if status == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "gunicorn.err").read_text()
            assert time.monotonic() < deadline, "gunicorn did not answer"
            time.sleep(0.1)

        status, headers, body = _request(port, "POST", "/api/v1/pm/tasks", valid_task(),
                                         {"Authorization": f"Bearer {TOKEN}"})
        assert status == 202, body
        assert headers["Location"] == "/api/v1/pm/tasks/billing/7"
        assert store.get_task("billing", 7).status == "Pending"
        status, _, _ = _request(port, "POST", "/api/v1/pm/tasks", valid_task(id=8))
        assert status == 401
        status, _, metrics = _request(port, "GET", "/metrics")
        assert status == 200
        assert b'orchestrator_api_requests_total{method="POST",route="/api/v1/pm/tasks",status="202"} 1.0' in metrics
        assert b'orchestrator_tasks{status="Pending"} 1.0' in metrics
    finally:
        process.terminate()
        process.wait(timeout=30)
        out.close()
        err.close()
    lines = [json.loads(line) for line in (tmp_path / "gunicorn.out").read_text().splitlines()]
    requests = [line for line in lines if line["logger"] == "orchestrator.api.access"]
    assert [(r["method"], r["route"], r["status"]) for r in requests if r["route"] != "/health"] == [
        ("POST", "/api/v1/pm/tasks", 202), ("POST", "/api/v1/pm/tasks", 401), ("GET", "/metrics", 200)]
    assert all(r["request_id"] for r in requests)
    assert TOKEN not in (tmp_path / "gunicorn.out").read_text() + (tmp_path / "gunicorn.err").read_text()


def _effective_config(env: dict[str, str]) -> dict[str, str]:
    """gunicorn's own reading of the config file (--print-config), as name -> value."""
    out = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "--print-config",
                          "api.wsgi:app"], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    return {name.strip(): value.strip() for name, _, value in (line.partition("=") for line in out.splitlines())}


def test_a_worker_holds_twice_its_threads_in_connections(base_env: dict[str, str]) -> None:
    # More and a busy worker takes connections it cannot serve yet, while another idles.
    config = _effective_config({**base_env, "GUNICORN_THREADS": "3"})
    assert (config["threads"], config["worker_connections"]) == ("3", "6")
    config = _effective_config({**base_env, "GUNICORN_THREADS": "3", "GUNICORN_WORKER_CONNECTIONS": "50"})
    assert config["worker_connections"] == "50"
