"""Test-only stand-ins for the steps other parts own (prepare, launch, the watcher).

They play their parts faithfully through the store and dispatch, as the real
ones do: prepare moves Preparing -> Launching and sends launch_run; launch
moves Launching -> Running and "runs the agent" (writes its outputs in the
workspace); the watcher records the observation on the run and sends
finish_run. What the agent does is set per task in a test-only Redis hash.

`Driver` runs every step in-process, in order, for deterministic tests; the
module `tests.support.fake_steps` registers the same functions as Celery steps
for tests with a real worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import dispatch
from orchestrator.coordination import admission, outcome
from orchestrator.coordination.outputs import HANDOFF_FILE, OUTPUTS_FILE
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import IllegalTransition, TaskStore
from orchestrator.workspace.layout import checkout_dir

BEHAVIOUR_KEY = "test:behaviour"
LAUNCHES_KEY = "test:launches"
SAMPLES_KEY = "test:samples"
FAKE_WATCH = "tests.fake_watch"


def set_behaviour(store: TaskStore, service: str, task_id: int, **behaviour: Any) -> None:
    """What the fake agent of that task does: outcome ('succeed', 'fail', 'platform'),
    platform_failures (how many attempts fail retryably first), hold (never ends by itself),
    duration (seconds before the watcher sees the end)."""
    store.redis.hset(BEHAVIOUR_KEY, f"{service}/{task_id}", json.dumps(behaviour))


def behaviour_of(store: TaskStore, service: str, task_id: int) -> dict[str, Any]:
    raw = store.redis.hget(BEHAVIOUR_KEY, f"{service}/{task_id}")
    return json.loads(raw) if raw else {}


def launches(store: TaskStore) -> list[str]:
    """Run ids in the order their agents started."""
    return store.redis.lrange(LAUNCHES_KEY, 0, -1)


def _current(store: TaskStore, run_id: str, status: Status) -> tuple[dict, dict] | None:
    run = store.get_run(run_id)
    if run is None:
        return None
    task = store.get_task(run.service, run.task_id)
    if task is None or task.status != status.value or task.current_run != run_id:
        return None
    return run, task


def fake_prepare(store: TaskStore, settings: Settings, run_id: str) -> None:
    """The workspace step's part: Preparing -> Launching, then launch_run."""
    found = _current(store, run_id, Status.PREPARING)
    if found is None:
        return
    run, _task = found
    checkout_dir(settings.workspace_root, run.service, run.task_id).mkdir(parents=True, exist_ok=True)
    try:
        store.transition(run.service, run.task_id, Status.LAUNCHING, reason="workspace ready",
                         actor="workspace", expect=Status.PREPARING, expect_fields={"current_run": run_id})
    except IllegalTransition:
        return
    dispatch.send(Step.LAUNCH_RUN, run_id)


def fake_launch(store: TaskStore, settings: Settings, run_id: str) -> None:
    """The launch step and the agent: Launching -> Running, outputs written, the watcher scheduled."""
    found = _current(store, run_id, Status.LAUNCHING)
    if found is None:
        return
    run, _task = found
    service, task_id = run.service, run.task_id
    try:
        store.transition(service, task_id, Status.RUNNING, reason="agent started", actor="watcher",
                         expect=Status.LAUNCHING, expect_fields={"current_run": run_id})
    except IllegalTransition:
        return
    store.update_run(run_id, phase="Running", started_at=time.time())
    # What the limits look like while this run is active (the test checks them).
    total, per_service = store.slot_counts()
    store.redis.rpush(SAMPLES_KEY, json.dumps({"total": total, "per_service": per_service}))
    store.redis.rpush(LAUNCHES_KEY, run_id)
    workspace = checkout_dir(settings.workspace_root, service, int(task_id))  # the task's worktree
    out = workspace / run.output_dir
    out.mkdir(parents=True, exist_ok=True)
    # The agent: reads the previous stage's hand-off, writes its own outputs.
    inputs = run.inputs or {}
    if isinstance(inputs, str):
        inputs = json.loads(inputs or "{}")
    received = ""
    if inputs.get("handoff_file"):
        received = (workspace / inputs["handoff_file"]).read_text()
    stage = run.stage or "run"
    (out / HANDOFF_FILE).write_text(f"{received}{stage} by {run.agent} ({run.prompt})\n")
    (out / OUTPUTS_FILE).write_text(json.dumps({
        "pull_request_url": inputs.get("pull_request_url") or f"https://github.com/o/{service}/pull/{task_id}",
        "branch": f"task-{task_id}",
        "summary": f"{stage} done",
    }))
    behaviour = behaviour_of(store, service, task_id)
    if not behaviour.get("hold"):
        dispatch.send(FAKE_WATCH, run_id, countdown=behaviour.get("duration"))


def fake_watch(store: TaskStore, settings: Settings, run_id: str, outcome: str | None = None) -> None:
    """The watcher's part: record the run's end on the run, then send finish_run."""
    run = store.get_run(run_id)
    if run is None:
        return
    behaviour = behaviour_of(store, run.service, run.task_id)
    outcome = outcome or behaviour.get("outcome", "succeed")
    if outcome == "succeed" and run.attempt <= behaviour.get("platform_failures", 0):
        outcome = "platform"
    fields: dict[str, Any] = {"finished_at": time.time(), "outputs": {"log_tail": f"last line of {run_id}"}}
    if outcome == "succeed":
        fields.update(phase="Succeeded", exit_code=0)
    elif outcome == "fail":
        fields.update(phase="Failed", exit_code=1, failure_reason="agent exited with code 1", retryable=False)
    else:
        fields.update(phase="Failed", failure_reason="pod evicted", retryable=True)
    store.update_run(run_id, **fields)
    dispatch.send(Step.FINISH_RUN, run_id)


class Driver:
    """Captures every step sent and runs them in-process, in order (no Celery)."""

    def __init__(self, store: TaskStore, settings: Settings):
        self.store, self.settings = store, settings
        self.sent: list[tuple[str, tuple[Any, ...], float | None]] = []
        self.handled: list[tuple[str, tuple[Any, ...]]] = []
        self.delayed: list[tuple[str, tuple[Any, ...], float]] = []  # every step sent with a countdown
        dispatch.install(self)  # this process's dispatcher for the test (uninstalled after it)
        self.steps: dict[str, Callable[..., Any]] = {
            Step.ADMIT: lambda service, task_id: admission.admit(store, self.settings, service, int(task_id)),
            Step.FINISH_RUN: lambda run_id: outcome.finish(store, self.settings, run_id),
            Step.PREPARE_WORKSPACE: lambda run_id: fake_prepare(store, self.settings, run_id),
            Step.LAUNCH_RUN: lambda run_id: fake_launch(store, self.settings, run_id),
            Step.CANCEL_RUN: lambda run_id: None,
            FAKE_WATCH: lambda run_id: fake_watch(store, self.settings, run_id),
        }

    def send(self, step: str, *args: Any, write: Any = None, countdown: float | None = None,
             argsrepr: str | None = None) -> Any:
        """A recording dispatcher: the write first (as when the broker is not the store's Redis), then the step."""
        written = write.apply(None) if write is not None else None
        if write is not None and not written:
            return written
        self.sent.append((step, args, countdown))
        if countdown:
            self.delayed.append((step, args, countdown))
        return written

    def run(self, limit: int = 10_000) -> list[tuple[str, tuple[Any, ...]]]:
        """Handle queued steps until none is left (countdowns are not waited for); what ran."""
        ran: list[tuple[str, tuple[Any, ...]]] = []
        while self.sent and len(ran) < limit:
            step, args, _countdown = self.sent.pop(0)
            self.steps[step](*args)
            ran.append((step, args))
        self.handled.extend(ran)
        return ran

    def complete(self, run_id: str, outcome: str = "succeed") -> None:
        """Play the watcher for a held run."""
        fake_watch(self.store, self.settings, run_id, outcome)


def workspace_file(settings: Settings, service: str, relative: str) -> Path:
    """A file named relative to a task's checkout (`.task/<id>/...`): in that task's worktree."""
    task_id = int(Path(relative).parts[1])
    return checkout_dir(settings.workspace_root, service, task_id) / relative
