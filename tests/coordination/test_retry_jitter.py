"""Platform retries of failed runs are jittered, so runs that failed together are not retried together."""

from __future__ import annotations

import re

from orchestrator import operations
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.coordination_harness import Driver, set_behaviour


def test_runs_that_failed_together_retry_at_spread_out_times(store: TaskStore, settings: Settings) -> None:
    drive = Driver(store, settings.replace(max_active_runs=20, max_runs_per_service=20, retry_backoff_seconds=60))
    for task_id in range(1, 13):  # e.g. a node lost under twelve runs at once
        set_behaviour(store, "web", task_id, platform_failures=1)
        operations.submit_task(
            store,
            {"id": task_id, "title": f"task {task_id}", "service_name": "web", "agent_name": "claude"},
            actor="pm",
        )
    drive.run()
    waits = []
    for task_id in range(1, 13):
        task = store.require_task("web", task_id)
        assert task.status == "Queued", task.status_reason
        found = re.search(r"retry 1 of \d+ in (\d+)s$", task.status_reason)
        assert found, task.status_reason
        waits.append(int(found.group(1)))
    assert all(30 <= wait <= 60 for wait in waits), waits  # backoff.delay: [0.5, 1) of the doubled wait
    assert len(set(waits)) > 1, waits  # not all at the same moment
