"""End to end: after a real run, the worker's and the watcher's /metrics say what happened.

A real redis-server, gunicorn, a Celery worker with two pool processes (their
figures merged by the multiprocess mode), the watcher and the local runner
with the stand-in `claude` (recorded stream-json with tokens and cost).
"""

from __future__ import annotations

import shlex
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_flow import task
from tests.support.redis_server import free_port
from tests.support.stack import Stack
from tests.support.wait import wait_for

CLAUDE = Path(__file__).resolve().parents[1] / "support" / "claude" / "claude"
COMMAND = shlex.join([str(CLAUDE), "-p", "--output-format", "stream-json", "--verbose", "Do the task."])
MODEL = "claude-sonnet-4-5-20250929"  # tests/fixtures/claude_stream/success.jsonl


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"ORCHESTRATOR_RECONCILE_SECONDS": "1", "ORCHESTRATOR_LOCAL_AGENT_COMMAND": COMMAND}
    running = Stack(tmp_path_factory.mktemp("metrics"), env=env)
    running.worker_metrics, running.watcher_metrics = free_port(), free_port()  # type: ignore[attr-defined]
    try:
        running.start_redis()
        running.start_api()
        running.start_worker(extra_env={"ORCHESTRATOR_METRICS_PORT": str(running.worker_metrics)})  # type: ignore[attr-defined]
        running.start_watcher(extra_env={"ORCHESTRATOR_METRICS_PORT": str(running.watcher_metrics)})  # type: ignore[attr-defined]
        yield running
    finally:
        running.down()


def test_a_run_shows_in_the_worker_and_watcher_metrics(stack: Stack) -> None:
    status, body = stack.request("POST", "/api/v1/pm/tasks", task(1, env={"APP_FAKE_SCENARIO": "success"}))
    assert status == 202, body
    done = stack.wait_status("demo", 1, {"Succeeded", "Failed"})
    assert done["status"] == "Succeeded", done
    outcome = done["runs"][0]["outcome"]

    worker_port: int = stack.worker_metrics  # type: ignore[attr-defined]
    # finish_run's own count lands when the step returns, a moment after the status moved.
    wait_for(lambda: total(scrape(worker_port), "orchestrator_steps_total", step="orchestrator.finish_run") >= 1)
    worker = scrape(worker_port)
    assert total(worker, "orchestrator_runs_ended_total", outcome=outcome, reason="none") == 1
    assert (
        total(worker, "orchestrator_run_duration_seconds_count", service="demo", agent="claude", outcome=outcome) == 1
    )
    for step in ("orchestrator.admit", "orchestrator.prepare_workspace", "orchestrator.launch_run"):
        assert total(worker, "orchestrator_steps_total", step=step, result="success") >= 1, step
    # Usage from the stream, per model, counted once; no task or run id among the labels.
    assert total(worker, "orchestrator_agent_tokens_total", service="demo", model=MODEL, kind="output") == 2211
    assert total(worker, "orchestrator_agent_cost_usd_total", service="demo", agent="claude") == pytest.approx(
        0.1234567
    )
    assert not any(dict(labels).keys() & {"task_id", "run_id", "task", "run"} for _, labels in worker)

    # The sweep the watcher queued at its start measured the workspace; the API exports the figure.
    status, text = stack.request("GET", "/metrics")
    api = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert status == 200 and total(api, "orchestrator_workspace_disk_bytes") >= 0
    assert ("orchestrator_workspace_disk_bytes", ()) in api

    watcher_port: int = stack.watcher_metrics  # type: ignore[attr-defined]
    watcher = scrape(watcher_port)
    assert total(watcher, "orchestrator_watcher_leader") == 1
    assert total(watcher, "orchestrator_reconcile_duration_seconds_count") >= 1
