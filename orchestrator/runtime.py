"""Process-wide resources built lazily from the settings (never at import).

Each process (a gunicorn worker, a Celery child after fork) builds its own on
first use, so no connection is shared across a fork.
"""

from __future__ import annotations

import functools
import os

from orchestrator.settings import get_settings
from orchestrator.store import TaskStore, connect


@functools.lru_cache(maxsize=4)
def _store_for(url: str, history_limit: int, caps: tuple[int, int], pid: int) -> TaskStore:
    return TaskStore(
        connect(url), history_limit=history_limit, max_tasks_per_service=caps[0], max_contexts_per_task=caps[1]
    )


def get_store() -> TaskStore:
    """The task store of this process, connected to ORCHESTRATOR_REDIS_URL."""
    settings = get_settings()
    caps = (settings.max_tasks_per_service, settings.max_contexts_per_task)
    return _store_for(settings.redis_url, settings.status_history_limit, caps, os.getpid())


def reset() -> None:
    """Drop cached resources (after the settings change in tests)."""
    _store_for.cache_clear()
