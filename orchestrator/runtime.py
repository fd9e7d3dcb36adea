"""Process-wide resources built lazily from the settings (never at import).

Each process (a gunicorn worker, a Celery child after fork) builds its own on
first use, so no connection is shared across a fork. `redis_target` is the one
place that turns the settings into where Redis is: the store (here and in the
API), the Celery broker and its result backend (orchestrator.celery_app) all
ask it, so a Sentinel setting reaches every one of them.
"""

from __future__ import annotations

import functools
import os

from orchestrator.settings import Settings, get_settings
from orchestrator.store import RedisTarget, TaskStore


def redis_target(settings: Settings) -> RedisTarget:
    """Where the store, the broker and the result backend find Redis."""
    return RedisTarget(
        settings.redis_url,
        settings.redis_sentinels,
        settings.redis_sentinel_master,
        settings.redis_sentinel_password,
    )


def _options(settings: Settings) -> tuple[int, int | None, int, int, int]:
    """The store's settings beside where Redis is: history limit, replica wait, and the caps."""
    return (
        settings.status_history_limit,
        settings.redis_wait_replicas,
        settings.redis_wait_timeout_ms,
        settings.max_tasks_per_service,
        settings.max_contexts_per_task,
    )


def new_store(settings: Settings, *, timeout: float = 5.0) -> TaskStore:
    """A task store on the settings' Redis, with their history limit, wait for replicas and caps."""
    return _new_store(redis_target(settings), _options(settings), timeout)


def _new_store(target: RedisTarget, options: tuple[int, int | None, int, int, int], timeout: float) -> TaskStore:
    history, replicas, wait_ms, max_tasks, max_contexts = options
    return TaskStore(
        target.client(timeout=timeout),
        history_limit=history,
        wait_replicas=replicas,
        wait_timeout_ms=wait_ms,
        max_tasks_per_service=max_tasks,
        max_contexts_per_task=max_contexts,
    )


@functools.lru_cache(maxsize=4)
def _store_for(target: RedisTarget, options: tuple[int, int | None, int, int, int], pid: int) -> TaskStore:
    return _new_store(target, options, 5.0)


def get_store() -> TaskStore:
    """The task store of this process, on the Redis the settings name."""
    settings = get_settings()
    return _store_for(redis_target(settings), _options(settings), os.getpid())


def reset() -> None:
    """Drop cached resources (after the settings change in tests)."""
    _store_for.cache_clear()
