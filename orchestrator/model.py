"""The model: typed tasks and runs, and the enums of their phases, priorities, outcomes and step results.

The store decodes its Redis hashes into these (`orchestrator.store.records`);
nothing else parses a record. Every field has a default, so a record written
before a field existed still reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from orchestrator.states import ACTIVE, TERMINAL, WAITING, Status

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "WAITING",
    "Status",
    "Priority",
    "PRIORITIES",
    "RunPhase",
    "ENDED_PHASES",
    "Outcome",
    "FinishResult",
    "StartResult",
    "PrepareAction",
    "ReportResult",
    "Task",
    "TaskSummary",
    "Run",
    "RESERVED_ENV",
    "RESERVED_ENV_PREFIX",
    "is_reserved_env",
]


class Priority(enum.StrEnum):
    """The priorities a task may be submitted with (Task Master's)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Lower is admitted first. The numbers are those of scores already stored in the admission index."""
        return _RANKS[self]

    @classmethod
    def parse(cls, raw: object, default: Priority | None = None) -> Priority:
        """The priority named by `raw` (any case); `default` (medium) for anything else."""
        try:
            return cls(str(raw).strip().lower())
        except ValueError:
            return default or cls.MEDIUM


_RANKS = {Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}
PRIORITIES: tuple[str, ...] = tuple(p.value for p in Priority)


class RunPhase(enum.StrEnum):
    """A run's phase as recorded on its record."""

    QUEUED = "Queued"  # recorded at admission, before its workspace is prepared
    LAUNCHED = "Launched"  # its Job (or process) was created; not seen running yet
    PENDING = "Pending"  # seen, waiting for its pod to start
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


# A run's recorded end: never written over, and what finish_run records the outcome of.
ENDED_PHASES: frozenset[RunPhase] = frozenset({RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED})


class Outcome(enum.StrEnum):
    """How a run ended for the user; a run that changed nothing is never shown as a plain success."""

    CHANGES = "changes"
    NO_CHANGES = "no_changes"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Step results: what a step did, for logs and tests (the values are what they logged before).


class FinishResult(enum.StrEnum):
    """What `coordination.outcome.finish` did when it did not move the task (else the status it moved it to)."""

    NO_RUN = "no-run"
    NO_TASK = "no-task"
    NOT_CURRENT = "not-current"
    NOT_ENDED = "not-ended"
    DELIVERING = "delivering"  # a succeeded run's delivery goes first; it sends finish again
    RACED = "raced"


class StartResult(enum.StrEnum):
    """What an admission walk did with one waiting task."""

    GONE = "gone"
    LATER = "later"
    GLOBAL_FULL = "global-full"
    SERVICE_FULL = "service-full"
    RELEASED = "released"
    RACED = "raced"
    STARTED = "run"


class PrepareAction(enum.StrEnum):
    """What the prepare_workspace step should do next."""

    LAUNCHED = "launched"
    RETRY = "retry"
    FAILED = "failed"
    REQUEUED = "requeued"
    SKIPPED = "skipped"


class ReportResult(enum.StrEnum):
    """What a GitHub status report did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    REFUSED = "refused"
    DEFERRED = "deferred"  # inside the edit interval: a later edit is scheduled
    COALESCED = "coalesced"  # inside the edit interval: the later edit already scheduled shows it


# Environment names a task's `env` may not set: the runners set them (credentials
# from Secrets, the task's model, HOME), and the agent contract (ORCHESTRATOR_*) is ours.
RESERVED_ENV: frozenset[str] = frozenset({"ANTHROPIC_API_KEY", "GITHUB_TOKEN", "ANTHROPIC_MODEL", "HOME"})
RESERVED_ENV_PREFIX = "ORCHESTRATOR_"


def is_reserved_env(name: str) -> bool:
    """True when a task's env may not set `name` (every runner refuses it)."""
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIX)


@dataclass(slots=True)
class Task:
    """A task as stored: what was submitted, where it stands, and what its next run will be."""

    service: str = ""
    id: int = 0
    agent: str = ""
    priority: Priority = Priority.MEDIUM
    spec: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.PENDING
    status_reason: str = ""
    context_version: int = 1
    created_at: float | None = None
    updated_at: float | None = None
    submitted_by: str = ""
    seq: int = 0
    history_seq: int = 0
    # The run under way (Preparing and later), and the one admission will start (Queued).
    current_run: str | None = None
    next_run: str | None = None
    next_version: int | None = None
    next_attempt: int | None = None
    stage: str = ""
    retries: int = 0
    not_before: float = 0.0
    redriven_at: float | None = None
    # GitHub: the pull request's end, and the task's status comment.
    pull_request_url: str | None = None
    pull_request_outcome: str | None = None
    github_status_comment: str | None = None
    github_status_digest: str | None = None
    # W3C traceparent of the submission (tracing on): every step of the task joins that trace.
    trace_parent: str = ""

    @property
    def ref(self) -> tuple[str, int]:
        return self.service, self.id


@dataclass(slots=True)
class TaskSummary:
    """A task as lists show it: the few small fields kept beside its record, never its documents.

    A list page of huge tasks reads only these (`title` and `submitted_status`
    are copied out of the spec when the task is stored), so its cost does not
    grow with what PMs submitted.
    """

    service: str = ""
    id: int = 0
    agent: str = ""
    priority: Priority = Priority.MEDIUM
    title: str = ""
    submitted_status: str = "pending"
    status: Status = Status.PENDING
    status_reason: str = ""
    context_version: int = 1
    current_run: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    seq: int = 0


@dataclass(slots=True)
class Run:
    """One attempt of a task at one context version (and pipeline stage)."""

    run_id: str = ""
    service: str = ""
    task_id: int = 0
    version: int = 0
    attempt: int = 0
    stage: str = ""
    runner: str = ""
    job_name: str = ""
    phase: RunPhase = RunPhase.QUEUED
    queued_at: float | None = None
    launched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    failure_reason: str = ""
    retryable: bool = False
    observed_reason: str = ""
    # "1" once finish_run was sent, or why it was not ("skipped: ..."); "" before.
    finish_sent: str = ""
    outcome: Outcome | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    # A pipeline stage's own agent, image and prompt, and what the previous stage handed on.
    agent: str = ""
    image: str = ""
    prompt: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    output_dir: str = ""
    # What prepare_workspace recorded (branch, commit), and what delivery left: the branch pushed
    # against its base, its commits and diffstat, the pull request.
    branch: str = ""
    commit: str = ""
    working_directory: str = ""
    workspace_fence: int | None = None
    base: str = ""
    commits: int | None = None
    diffstat: dict[str, int] | None = None
    pull_request_url: str = ""
    pull_request_number: int | None = None
    delivered_at: float | None = None
    delivery_failures: int = 0
    delivery_error: str = ""
    launch_failures: int = 0  # launches the runner's platform refused for now (retried by the step)
    vanished: bool = False  # its Job or process was gone before its end was seen
    stopped_at: float | None = None  # when the watcher saw nothing of its agent left (after a cancel)
    # What the agent's stream-json said it consumed, and a model rate limit's end.
    usage: dict[str, Any] = field(default_factory=dict)
    rate_limited_until: float | None = None

    @property
    def ended(self) -> bool:
        """True once the run's end is recorded (it is never written over)."""
        return self.phase in ENDED_PHASES

    @property
    def agent_may_run(self) -> bool:
        """True while its agent may still be at work: launched, and neither seen to end nor seen gone.

        A cancel records the run Cancelled when it asks the runner to stop, not
        when the agent has stopped (a deleted pod takes its grace period): such a
        run keeps its worktree and slot until the watcher sees it gone (`stopped_at`).
        """
        return bool(self.job_name) and not self.stopped_at and self.phase not in (RunPhase.SUCCEEDED, RunPhase.FAILED)
