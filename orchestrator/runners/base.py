"""The contract every runner keeps; coordination code depends on this only.

A run is launched by the `deploy` step, observed by the watcher (the singleton
`orchestrator watch` loop), and its end is handed to the `finish_run` step.
Nothing here waits for a run to end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class AgentSpec:
    """What program a run executes; every field comes from configuration."""

    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    model: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """Everything a runner needs to start one run; built from the task and the run record."""

    run_id: str
    service: str
    task_id: int
    version: int
    attempt: int
    agent: AgentSpec
    workspace_dir: Path  # the task's checkout on the shared volume (its worktree, <service>/worktrees/<task id>)
    working_directory: str = ""  # relative to workspace_dir
    stage: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # non-secret values only
    timeout_seconds: int = 3600
    submitted_by: str = ""
    origin: str = ""
    # Where the agent writes outputs.json and handoff.md, relative to workspace_dir
    # (coordination reads them back from there when the run ends).
    output_dir: str = ""
    # Our own contract values for this run (stage prompt, previous stage's outputs), all ORCHESTRATOR_*.
    contract_env: Mapping[str, str] = field(default_factory=dict)
    # W3C trace context of the step that launched the run (tracing on): the agent's spans join the task's trace.
    traceparent: str = ""


# Phases a runner reports; the watcher maps them onto task statuses.
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


@dataclass(frozen=True)
class RunObservation:
    """What a runner saw of one run at one moment."""

    run_id: str
    phase: str
    reason: str = ""
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # True when the failure came from the platform (eviction, node loss, image
    # pull hiccup) rather than the agent, so another attempt may succeed.
    retryable: bool = False
    # True when nothing of the run was left to see (its Job or process gone before its end was
    # seen): finish_run then reads what the run left in its output directory before deciding.
    vanished: bool = False


class Tracker(Protocol):
    """How the watcher follows every run of one runner; each runner builds its own (`Runner.tracker`).

    The watcher reconciles every `poll_seconds` (relist, then `observations`
    of the runs the store says are active), runs `stream(name, stop)` in a
    thread for each of `streams` while it leads (each calls the watcher back
    with a run id when something of that run changed), and sweeps.
    """

    poll_seconds: float  # how often the watcher reconciles
    streams: tuple[str, ...]  # the push streams the watcher runs in threads (none: polling alone)
    stream_stop_seconds: float  # how long a stream may take to notice its stop

    def relist(self) -> None:
        """Read afresh what exists (one list per kind), before `observations`."""

    def observations(self, run_ids: Iterable[str]) -> dict[str, RunObservation]:
        """Observations of those of the given runs that something is known of."""

    def observation(self, run_id: str) -> RunObservation | None:
        """One run's observation from what the tracker holds; None when nothing of it is known."""

    def still_running(self, run_id: str) -> bool:
        """True when the run's Job or process still runs (so an end the watcher inferred must stop it)."""

    def end_lags(self, run_id: str) -> bool:
        """True when the run's end was seen before the details of its cause (wait for them)."""

    def stream(self, name: str, stop: threading.Event) -> None:
        """Follow one of `streams` until `stop`, calling back on every change."""

    def sweep(self, older_than: float) -> list[str]:
        """Remove what finished runs left (Jobs, run directories) older than that; return their names."""


class Runner(Protocol):
    """A place runs execute."""

    def launch(self, request: RunRequest) -> str:
        """Start the run, or adopt it when it already exists; return its Job or process name."""

    def observe(self, run_id: str) -> RunObservation | None:
        """The run's current state, or None when nothing of it exists any more."""

    def cancel(self, run_id: str) -> None:
        """Stop the run; nothing happens when it already ended or never started."""

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The agent's output lines; with `follow`, until the run ends (a `Lines`, which can be aborted)."""

    def tracker(self, on_change: Callable[[str], None], *, watch_timeout: int = 60) -> Tracker:
        """What the watcher drives to follow this runner's runs; `on_change(run_id)` when a stream sees one change.

        `watch_timeout` bounds one watch request of a runner that streams.
        """


class Lines:
    """A run's output lines; `abort()`, from any thread, ends a read that waits for the next one.

    A followed log waits in a read (a socket, a poll of a file) for as long as
    the run is silent, and only the thread reading can close a generator: the
    API's reader of a follow whose client has gone is stopped with this instead.
    """

    def __init__(self, lines: Iterator[str], abort: Callable[[], None]) -> None:
        self._lines = lines
        self._abort = abort

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        close = getattr(self._lines, "close", None)
        if close is not None:
            close()

    def abort(self) -> None:
        self._abort()
