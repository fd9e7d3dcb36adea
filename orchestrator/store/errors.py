"""The store's own errors."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """Redis does not answer; callers answer 503 and retry later."""


class NotReplicated(StoreUnavailable):
    """An intake write reached the master, but too few replicas confirmed it in time.

    The write stays (a retry of it is deduplicated), but it is not acknowledged:
    a failover now could lose it.
    """


class TaskNotFound(StoreError):
    """No task with that (service, id)."""


class TaskExists(StoreError):
    """A task with that (service, id) was already submitted."""


class LeaseNotHeld(StoreError):
    """A change conditioned on holding a lease was refused: the lease passed to another holder."""


class IllegalTransition(StoreError):
    """The state machine forbids the change; nothing was written."""

    def __init__(self, service: str, task_id: int, current: str, target: str, *, conflict: bool = False):
        self.service, self.task_id, self.current, self.target = service, task_id, current, target
        self.conflict = conflict
        why = "the task moved on meanwhile" if conflict else "that transition is not allowed"
        super().__init__(f"task {service}/{task_id} is {current}; cannot move to {target}: {why}")


class LimitReached(StoreError):
    """A configured cap (tasks per service, contexts per task) is full; nothing was written.

    `setting` is the Settings attribute of the cap, so the API can name its variable.
    """

    def __init__(self, setting: str, limit: int, message: str):
        self.setting, self.limit = setting, limit
        super().__init__(message)
