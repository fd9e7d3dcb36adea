"""Every Redis key name of the store, in one place.

The names and formats are what existing data is stored under: change none of
them without a migration. The broker's queue lists are named by `broker`.
"""

from __future__ import annotations

PREFIX = "orch"


def task_ref(service: str, task_id: int | str) -> str:
    """The index member naming one task."""
    return f"{service}/{task_id}"


def split_ref(ref: str) -> tuple[str, int]:
    service, _, task_id = ref.rpartition("/")
    return service, int(task_id)


def run_id_for(service: str, task_id: int, version: int, attempt: int, stage: str | None = None) -> str:
    """A run's id: one per (task, context version, stage, attempt), never random."""
    stage_part = f"-{stage}" if stage else ""
    return f"{service}-{task_id}-v{version}{stage_part}-a{attempt}"


# Tasks and runs ------------------------------------------------------------------


TASK_KEY_PREFIX = f"{PREFIX}:task:"


def task_key(service: str, task_id: int | str) -> str:
    return f"{task_key_prefix(service)}{task_id}"


def task_key_prefix(service: str) -> str:
    """What every task key of `service` starts with (a script builds keys of the service's tasks from it)."""
    return f"{TASK_KEY_PREFIX}{service}:"


def history_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}:history"


def task_runs_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}:runs"


def contexts_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}:contexts"


def run_key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}"


def dependents_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:dependents:{service}:{task_id}"


SEQ_KEY = f"{PREFIX}:seq"
GAUGES_KEY = f"{PREFIX}:gauges"

# Indexes: sorted sets of task refs scored by the task's sequence number.
IDX_PREFIX = f"{PREFIX}:idx"
IDX_ALL = f"{IDX_PREFIX}:all"
IDX_STATUS_PREFIX = f"{IDX_PREFIX}:status:"
IDX_AGENT_PREFIX = f"{IDX_PREFIX}:agent:"


def idx_service(service: str) -> str:
    return f"{IDX_PREFIX}:service:{service}"


def idx_agent(agent: str) -> str:
    return f"{IDX_AGENT_PREFIX}{agent}"


def idx_status(status: str) -> str:
    return f"{IDX_STATUS_PREFIX}{status}"


# Deliveries, idempotency, pull requests --------------------------------------------


def idem_key(key: str) -> str:
    return f"{PREFIX}:idem:{key}"


def delivery_key(delivery_id: str) -> str:
    return f"{PREFIX}:delivery:{delivery_id}"


def event_identity_key(identity: str) -> str:
    return f"{PREFIX}:event-identity:{identity}"


def event_handled_key(delivery_id: str) -> str:
    return f"{PREFIX}:event-handled:{delivery_id}"


def event_pending_key(delivery_id: str) -> str:
    return f"{PREFIX}:event-pending:{delivery_id}"


# Accepted deliveries whose event was not acted on yet: delivery id -> when last queued.
EVENTS_PENDING = f"{PREFIX}:events:pending"


def pull_request_key(key: str) -> str:
    return f"{PREFIX}:github:pr:{key}"


# Leases --------------------------------------------------------------------------


def lease_key(name: str) -> str:
    return f"{PREFIX}:lease:{name}"


def fence_key(name: str) -> str:
    return f"{PREFIX}:fence:{name}"


def follows_key(owner: str) -> str:
    """Followed log streams of one API token (a digest of it): stream ids scored by lease expiry (ms, Redis clock)."""
    return f"{PREFIX}:follows:{owner}"


# Capacity --------------------------------------------------------------------------

# Capacity slots: sorted sets of run ids scored by lease expiry (ms, Redis clock),
# one global and one per service, plus a hash run id -> service.
SLOTS_GLOBAL = f"{PREFIX}:slots:global"
SLOTS_SERVICE_PREFIX = f"{PREFIX}:slots:service:"
SLOTS_HOLDERS = f"{PREFIX}:slots:holders"
# Tasks waiting for capacity, scored by admission order (priority, then age).
WAITING = f"{PREFIX}:waiting"


def slots_service(service: str) -> str:
    return f"{SLOTS_SERVICE_PREFIX}{service}"


# Usage --------------------------------------------------------------------------------

# What finished runs consumed, per UTC day (YYYY-MM-DD): one hash per service and
# day ("<agent>|<metric>" -> number) and one per day over every service
# ("<metric>" -> number). Kept USAGE_TTL_SECONDS after their last write.
USAGE_TTL_SECONDS = 400 * 86400


def usage_service_day(service: str, day: str) -> str:
    return f"{PREFIX}:usage:service:{service}:{day}"


def usage_day(day: str) -> str:
    return f"{PREFIX}:usage:day:{day}"


# Side effects ----------------------------------------------------------------------


def effect_key(kind: str, subject: str) -> str:
    """The intent/completion record of one side effect (a Job created, a branch pushed...) of one subject."""
    return f"{PREFIX}:effect:{kind}:{subject}"


# Web console sign-ins ----------------------------------------------------------------


def console_session_key(digest: str) -> str:
    """One signed-in console session (a digest of its id), expiring with the session's lifetime."""
    return f"{PREFIX}:console-session:{digest}"


# Every status change, as a capped stream (ref, status, reason, at): what live pages follow.
STATUS_CHANGES = f"{PREFIX}:changes:status"
STATUS_CHANGES_MAX = 10_000


# GitHub pacing ---------------------------------------------------------------------

GITHUB_WRITES = f"{PREFIX}:github:writes"  # sorted set: the writes of the last minute, by time
GITHUB_PAUSE = f"{PREFIX}:github:pause"  # set while GitHub asked every writer to wait


def comment_edited_key(ref: str) -> str:
    """Set for the edit interval after a task's status comment was written."""
    return f"{PREFIX}:github:edited:{ref}"


def comment_trailing_key(ref: str) -> str:
    """Set while a later edit of a task's status comment is scheduled."""
    return f"{PREFIX}:github:trailing:{ref}"
