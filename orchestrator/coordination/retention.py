"""Retention: the watcher deletes tasks that ended more than ORCHESTRATOR_RETENTION_DAYS ago.

Deleting is the store's (one atomic script per task, which re-checks that the
task still qualifies); this decides when, and drops what points at a deleted
task from outside it (its pull request's link).
"""

from __future__ import annotations

import logging
import time

from orchestrator.github.routing import pull_request_key
from orchestrator.settings import Settings
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.retention")

# Tasks deleted per pass at most: a backlog (retention just lowered, say) drains over a few passes
# instead of holding Redis busy in one.
PER_PASS = 10_000


def expire_ended(store: TaskStore, settings: Settings, *, now: float | None = None) -> list[str]:
    """Delete ended tasks older than the retention; returns their `service/id`."""
    if not settings.retention_days:
        return []
    now = time.time() if now is None else now
    cutoff = now - settings.retention_days * 86400
    candidates = store.ended_before(cutoff, limit=PER_PASS)
    outputs = store.task_fields(candidates, "outputs")
    purged: list[str] = []
    for (service, task_id), task in zip(candidates, outputs):
        if not store.purge_task(service, task_id, cutoff):
            continue  # retried, given new context or depended on since it was read
        purged.append(f"{service}/{task_id}")
        key = pull_request_key(task.outputs.get("pull_request_url")) if task else None
        if key:
            store.unlink_pull_request(key, service, task_id)
    if purged:
        log.info("retention: deleted %d tasks ended more than %d days ago", len(purged), settings.retention_days)
    return purged
