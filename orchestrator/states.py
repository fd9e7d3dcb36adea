"""The task state machine: every status and every legal transition, in one place."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """A task's status as the system sees it (not the Task Master status a PM submits)."""

    PENDING = "Pending"
    QUEUED = "Queued"
    BLOCKED = "Blocked"
    PREPARING = "Preparing"
    LAUNCHING = "Launching"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    def __str__(self) -> str:
        return self.value


S = Status

TERMINAL: frozenset[Status] = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED})
ACTIVE: frozenset[Status] = frozenset({S.PREPARING, S.LAUNCHING, S.RUNNING})
WAITING: frozenset[Status] = frozenset({S.PENDING, S.QUEUED, S.BLOCKED})

# from -> the statuses it may move to. Why each edge exists:
# - Pending is where every (re)start enters; admission sends it to Queued or Blocked.
# - Blocked -> Blocked lets the reason change (waiting on task 3, then on task 4).
# - Preparing/Launching -> Queued: the workspace lock or capacity was lost, try again later.
# - Launching -> Succeeded/Failed: a Job can finish before its pod was ever seen running.
# - Running -> Queued: a retryable failure (eviction, node loss) starts a new attempt.
# - any non-terminal -> Pending: new context supersedes the current run.
# - terminal -> Pending: retry (Failed, Cancelled) or new context (any).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.PENDING: frozenset({S.QUEUED, S.BLOCKED, S.FAILED, S.CANCELLED}),
    S.BLOCKED: frozenset({S.QUEUED, S.BLOCKED, S.PENDING, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.PREPARING, S.BLOCKED, S.PENDING, S.FAILED, S.CANCELLED}),
    S.PREPARING: frozenset({S.LAUNCHING, S.QUEUED, S.PENDING, S.FAILED, S.CANCELLED}),
    S.LAUNCHING: frozenset({S.RUNNING, S.QUEUED, S.PENDING, S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.QUEUED, S.PENDING}),
    S.SUCCEEDED: frozenset({S.PENDING}),
    S.FAILED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
}

# Which statuses a PM operation may start from.
RETRYABLE_FROM: frozenset[Status] = frozenset({S.FAILED, S.CANCELLED})
CANCELLABLE_FROM: frozenset[Status] = frozenset(set(Status) - TERMINAL)


def is_legal(current: Status | str, target: Status | str) -> bool:
    """True when `current -> target` is an edge of the state machine."""
    return Status(target) in TRANSITIONS[Status(current)]


def sources_of(target: Status | str) -> frozenset[Status]:
    """Every status from which `target` may be entered."""
    target = Status(target)
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)
