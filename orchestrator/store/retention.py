"""Retention: ended tasks, with their runs, history and contexts, deleted once old enough.

Without it the store grows by every task ever submitted. Webhook records
(deliveries, event identities) already expire by their own TTL, usage totals
after `USAGE_TTL_SECONDS`, and side-effect records after theirs; what is kept
for good until this deletes it is a task and what hangs under it.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.states import TERMINAL
from orchestrator.store.base import StoreBase
from orchestrator.store.keys import (
    IDX_AGENT_PREFIX,
    IDX_ALL,
    IDX_STATUS_PREFIX,
    contexts_key,
    dependents_key,
    history_key,
    idx_service,
    idx_status,
    run_key,
    split_ref,
    task_key,
    task_key_prefix,
    task_ref,
    task_runs_key,
)

_ENDED = ",".join(sorted(status.value for status in TERMINAL))


class Retention(StoreBase):
    """Finding and deleting ended tasks older than a cutoff."""

    def ended_before(self, cutoff: float, *, batch: int = 1000, limit: int = 10_000) -> list[tuple[str, int]]:
        """Up to `limit` ended tasks whose last change is older than `cutoff` (epoch seconds), oldest index first.

        Reads the ended statuses' indexes a batch at a time and only each
        task's `updated_at`: the scan costs one field per ended task.
        """
        found: list[tuple[str, int]] = []
        for status in sorted(TERMINAL, key=lambda s: s.value):
            start = 0
            while len(found) < limit:
                refs = self._safe(self.redis.zrange, idx_status(status.value), start, start + batch - 1)
                if not refs:
                    break
                start += batch
                pipe = self.redis.pipeline(transaction=False)
                for ref in refs:
                    pipe.hget(task_key(*split_ref(ref)), "updated_at")
                for ref, updated in zip(refs, self._safe(pipe.execute)):
                    if updated is not None and float(updated) < cutoff:
                        found.append(split_ref(ref))
        return found[:limit]

    def purge_task(self, service: str, task_id: int, cutoff: float) -> bool:
        """Delete the task, its runs, history, contexts and index entries if it still qualifies (see the script)."""
        runs: Iterable[str] = self._safe(self.redis.zrange, task_runs_key(service, task_id), 0, -1)
        purged = self._call(
            self._purge_task,
            keys=[
                task_key(service, task_id),
                history_key(service, task_id),
                task_runs_key(service, task_id),
                contexts_key(service, task_id),
                dependents_key(service, task_id),
                IDX_ALL,
                idx_service(service),
                *(run_key(run_id) for run_id in runs),
            ],
            args=[
                repr(cutoff),
                _ENDED,
                IDX_STATUS_PREFIX,
                IDX_AGENT_PREFIX,
                task_key_prefix(service),
                task_ref(service, task_id),
            ],
        )
        return bool(int(purged))
