"""The task store: tasks, runs, status history, indexes and dedupe keys in Redis.

This package is the only code that knows Redis key names (`keys`, and the
broker's queue lists in `broker`). Every status change goes through one Lua
script, so it is atomic: two workers racing to move the same task both read
Running, and exactly one of them may write Succeeded.
"""

from __future__ import annotations

from orchestrator.store.broker import Broker
from orchestrator.store.capacity import Capacity
from orchestrator.store.changes import StatusChange, StatusChanges
from orchestrator.store.connection import RedisTarget, connect
from orchestrator.store.deliveries import Deliveries
from orchestrator.store.effects import EffectClaim, Effects
from orchestrator.store.errors import (
    IllegalTransition,
    LeaseNotHeld,
    LimitReached,
    NotReplicated,
    StoreError,
    StoreUnavailable,
    TaskExists,
    TaskNotFound,
)
from orchestrator.store.github import GitHubPacing
from orchestrator.store.keys import PREFIX, run_id_for, split_ref, task_ref
from orchestrator.store.leases import Leases
from orchestrator.store.listing import Listing
from orchestrator.store.records import Transition
from orchestrator.store.retention import Retention
from orchestrator.store.runs import Runs
from orchestrator.store.sessions import ConsoleSessions
from orchestrator.store.tasks import Tasks
from orchestrator.store.usage import Usage


class TaskStore(
    Tasks,
    Listing,
    Runs,
    Capacity,
    Leases,
    Deliveries,
    Effects,
    Broker,
    Usage,
    Retention,
    ConsoleSessions,
    StatusChanges,
    GitHubPacing,
):
    """Tasks, runs and their history, stored in Redis: one object over every part of the store."""


__all__ = [
    "PREFIX",
    "EffectClaim",
    "IllegalTransition",
    "LeaseNotHeld",
    "NotReplicated",
    "RedisTarget",
    "LimitReached",
    "StatusChange",
    "StoreError",
    "StoreUnavailable",
    "TaskExists",
    "TaskNotFound",
    "TaskStore",
    "Transition",
    "connect",
    "run_id_for",
    "split_ref",
    "task_ref",
]
