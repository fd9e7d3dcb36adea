"""A run's life as plain code: launch it, record what the watcher saw, cancel it.

The steps in `workers/steps.py` and the watcher call these; nothing here
waits for a run to end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator import agent_env, backoff, dispatch, effects, tracing, validation
from orchestrator.coordination.outputs import run_output_dir
from orchestrator.github.reporter import notify_status
from orchestrator.model import ENDED_PHASES, Outcome, Run, RunPhase, Task, is_reserved_env
from orchestrator.runners.base import FAILED, PENDING, RUNNING, SUCCEEDED, AgentSpec, Runner, RunObservation, RunRequest
from orchestrator.runners.errors import RunnerError, RunnerUnavailable
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import IllegalTransition, StoreError, TaskStore
from orchestrator.usage.budget import with_limits
from orchestrator.workspace.layout import checkout_dir

log = logging.getLogger("orchestrator.runs")

Send = Callable[..., None]
TERMINAL_PHASES = ENDED_PHASES  # a recorded end is never written over
LAUNCHABLE = frozenset({Status.LAUNCHING, Status.RUNNING})
ACTOR = "watcher"

# A launch the runner's platform refused for now (the Kubernetes API busy, down or timing
# out, still after the client's own quick retries) is tried again by the step, this many
# times, LAUNCH_BACKOFF_SECONDS doubled each time (jittered, and never longer than half
# ORCHESTRATOR_STUCK_AFTER_SECONDS, so the re-drive does not take the waiting step for a
# lost one); then the run fails with the reason. A control-plane upgrade or an API server
# restart lasts about that long; an outage past it is reported rather than waited out.
LAUNCH_RETRIES = 5
LAUNCH_BACKOFF_SECONDS = 5.0


class LaunchLater(Exception):
    """The launch should be tried again in `countdown` seconds (the step retries it)."""

    def __init__(self, message: str, countdown: float):
        super().__init__(message)
        self.countdown = countdown


def agent_spec(settings: Settings, agent: str, model: str | None) -> AgentSpec:
    """The program a run executes: image and command from configuration, model from the task."""
    if settings.runner == "local":
        from orchestrator.runners.local import default_local_command

        command = default_local_command(settings)
    else:
        command = settings.agent_command
    image = settings.agent_images.get(agent, settings.agent_image)
    return AgentSpec(name=agent, image=image, command=tuple(command), model=model or None)


def _env(spec: Mapping[str, Any], settings: Settings) -> dict[str, str]:
    raw = spec.get("env") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("task env must be a mapping of names to values")
    env = {validation.env_name(str(k)): str(v) for k, v in raw.items()}
    for name in env:
        # Secrets come only from the Secret (or the worker's environment); our contract is ours.
        # The API checked the allow-list at submission; a task stored another way (GitHub, an
        # older version, a pipeline stage) is checked again here.
        if is_reserved_env(name) or agent_env.name_errors(name, settings.agent_env_allowed):
            raise ValueError(f"task env may not set {name}")
    return env


def build_request(settings: Settings, task: Task, run: Run) -> RunRequest:
    """The RunRequest of a run, from the task's spec, the run record and configuration."""
    spec = task.spec
    # A pipeline stage names its own agent (and maybe image) on the run record.
    agent = validation.agent_name(str(run.agent or spec.get("agent_name") or task.agent))
    # prepare_workspace may record the directory it prepared on the run; else the task's own.
    workdir = validation.relative_path(str(run.working_directory or spec.get("working_directory") or ""))
    timeout = int(spec.get("timeout_seconds") or settings.default_timeout_seconds)
    origin = task.origin
    agent_program = agent_spec(settings, agent, spec.get("model"))
    if run.image:
        agent_program = dataclasses.replace(agent_program, image=run.image)
    agent_program = with_limits(agent_program, settings, spec)  # --max-budget-usd / --max-turns for Claude Code
    output_dir = validation.relative_path(
        run.output_dir or run_output_dir(run.service, run.task_id, run.run_id), what="output directory"
    )
    inputs = run.inputs
    contract = {
        key: str(value)
        for key, value in {
            "ORCHESTRATOR_STAGE_PROMPT": run.prompt,
            "ORCHESTRATOR_INPUT_BRANCH": inputs.get("branch") or "",
            "ORCHESTRATOR_INPUT_PULL_REQUEST_URL": inputs.get("pull_request_url") or "",
            "ORCHESTRATOR_HANDOFF_FILE": inputs.get("handoff_file") or "",
        }.items()
        if value
    }
    return RunRequest(
        run_id=run.run_id,
        service=validation.service_name(run.service),
        task_id=run.task_id,
        version=run.version,
        attempt=run.attempt,
        agent=agent_program,
        workspace_dir=checkout_dir(settings.workspace_root, run.service, run.task_id),  # its worktree
        working_directory=workdir,
        stage=run.stage or None,
        env=_env(spec, settings),
        timeout_seconds=max(1, min(timeout, settings.max_timeout_seconds)),
        submitted_by=task.submitted_by,
        origin=json.dumps(origin, sort_keys=True) if origin else "",
        output_dir=output_dir,
        contract_env=contract,
        traceparent=tracing.current_traceparent(),
    )


def _fail_launch(store: TaskStore, run_id: str, reason: str, send: Send) -> None:
    if store.update_unended_run(
        run_id, TERMINAL_PHASES, phase=FAILED, failure_reason=reason, finished_at=time.time(), retryable="0"
    ):
        _finish(store, run_id, send)  # otherwise whoever recorded the end (a cancel) saw to it


def launch(
    store: TaskStore,
    settings: Settings,
    runner: Runner,
    run_id: str,
    *,
    send: Send = dispatch.send,
    retries: int = 0,
) -> str | None:
    """Start the run (or adopt it) and record its Job name; a refused launch fails the run at once.

    Keeping the Job is decided in the store, in one step with the cancel's own
    write (`record_launch`): a cancel that lands anywhere in a launch either
    finds the Job recorded (its cancel step deletes it) or makes the launch
    delete the Job it made. No Job is left that nothing tracks.

    Raises LaunchLater when the runner's platform refused for now and fewer
    than LAUNCH_RETRIES tries were made (`retries`: the step's own count; the
    run's count wins, so a re-sent message does not start it again).
    """
    run, task, _ = store.get_run_with_task(run_id)
    if run is None:
        log.warning("launch_run: no run %s; ignored", run_id)
        return None
    if task is None or task.current_run != run_id or task.status not in LAUNCHABLE or run.ended:
        log.info("launch_run: run %s is no longer the task's active run; ignored", run_id)
        _stop_unrecorded(store, runner, settings, run)
        return None
    try:
        request = build_request(settings, task, run)
    except ValueError as exc:
        _fail_launch(store, run_id, f"invalid task: {exc}", send)
        return None
    # One create per run, however often this step is delivered: the intent and completion are
    # recorded around it, and an interrupted attempt is resolved by looking for its Job (or process).
    find = getattr(runner, "find", None)
    try:
        done = effects.once(
            store,
            _effect_kind(settings),
            run_id,
            act=lambda: runner.launch(request),
            find=(lambda: find(request)) if find is not None else None,
            lease_seconds=max(settings.stuck_after_seconds, 5.0),
        )
    except RunnerUnavailable as exc:
        _later_or_fail(store, settings, run, max(retries, run.launch_failures), exc, send)
        return None
    except RunnerError as exc:
        log.warning("launch_run: run %s failed to launch: %s", run_id, exc)
        _fail_launch(store, run_id, f"launch failed: {exc}", send)
        return None
    if done.result is None:
        return None  # another delivery of this step is launching it right now
    name = done.result
    if done.how == "recorded" and run.job_name:
        return name  # launched and recorded before: nothing to do
    recorded = store.record_launch(
        run,
        TERMINAL_PHASES,
        LAUNCHABLE,
        phase=RunPhase.LAUNCHED,  # unless the watcher saw it start meanwhile
        job_name=name,
        runner=settings.runner,
        launched_at=time.time(),
    )
    if not recorded:
        # Cancelled (or superseded) while the Job was being created: the agent nobody wants
        # any more is stopped now instead of running to its end.
        log.warning("launch_run: run %s was cancelled while it launched; stopping it", run_id)
        _stop(runner, run_id)
        return None
    return name


def _later_or_fail(
    store: TaskStore, settings: Settings, run: Run, retries: int, exc: RunnerUnavailable, send: Send
) -> None:
    """Raise LaunchLater while tries are left; else fail the run, saying how long it was tried."""
    if retries >= LAUNCH_RETRIES:
        log.warning("launch_run: run %s failed to launch after %d retries: %s", run.run_id, retries, exc)
        _fail_launch(
            store, run.run_id, f"launch failed after {retries} retries (the platform kept refusing): {exc}", send
        )
        return
    countdown = min(backoff.delay(retries, base=LAUNCH_BACKOFF_SECONDS), settings.stuck_after_seconds / 2)
    message = f"launch failed for now ({exc}); retry {retries + 1} of {LAUNCH_RETRIES} in {countdown:.0f}s"
    store.update_unended_run(run.run_id, TERMINAL_PHASES, launch_failures=retries + 1, observed_reason=message[:1000])
    try:
        store.update_task(run.service, run.task_id)  # touched: a step waiting to retry is not a lost one
    except StoreError:
        pass
    log.warning("launch_run: run %s: %s", run.run_id, message)
    raise LaunchLater(message, countdown)


def _effect_kind(settings: Settings) -> str:
    return effects.LOCAL_AGENT if settings.runner == "local" else effects.JOB


def _stop(runner: Runner, run_id: str) -> None:
    try:
        runner.cancel(run_id)
    except RunnerError as exc:
        log.warning("launch_run: could not stop run %s: %s (the watcher's sweep will)", run_id, exc)


def _stop_unrecorded(store: TaskStore, runner: Runner, settings: Settings, run: Run) -> None:
    """Stop what an interrupted launch of a run nobody wants may have made and never recorded.

    A worker that created the Job and died before recording it leaves only its
    intent (or completion) in the store; when the run was cancelled meanwhile,
    the cancel step found no Job to delete and nothing else would ever look.
    """
    if run.job_name or not store.effect(_effect_kind(settings), run.run_id):
        return  # recorded (the cancel or the watcher sees to it), or never attempted
    if run.phase in (RunPhase.SUCCEEDED, RunPhase.FAILED):
        return  # the watcher saw the agent end: nothing runs; the Job (and its logs) stay until its TTL
    log.warning("launch_run: run %s may have an unrecorded Job from an interrupted launch; stopping it", run.run_id)
    _stop(runner, run.run_id)


def _finish(store: TaskStore, run_id: str, send: Send) -> bool:
    """Hand the ended run to finish_run once (unless its task moved on meanwhile)."""
    run = store.get_run(run_id)
    if run is None or run.finish_sent:
        return False
    task = store.get_task(run.service, run.task_id)
    if task is None or task.current_run != run_id or task.status not in LAUNCHABLE:
        # Cancelled or superseded: whoever moved the task on already re-drove it.
        store.update_run(run_id, finish_sent="skipped: the task moved on")
        return False
    # Sent before it is marked: a crash in between sends twice (finish_run is
    # idempotent), never zero times.
    send(Step.FINISH_RUN, run_id)
    store.update_run(run_id, finish_sent="1")
    return True


def _progress_fields(run: Run, obs: RunObservation) -> dict[str, Any]:
    """What a not-yet-ended observation would write on the run (the end adds its own fields)."""
    fields: dict[str, Any] = {"observed_reason": obs.reason[:1000]}
    if obs.started_at and not run.started_at:
        fields["started_at"] = obs.started_at
    if obs.phase == RUNNING:
        fields["phase"] = RUNNING
        fields.setdefault("started_at", run.started_at or obs.started_at or time.time())
    elif run.phase != RUNNING and obs.phase == PENDING:
        fields["phase"] = PENDING
    return fields


def _unchanged(run: Run, fields: Mapping[str, Any]) -> bool:
    return all(getattr(run, k) == v for k, v in fields.items() if k != "started_at") and bool(
        run.started_at or "started_at" not in fields
    )


def is_quiet(run: Run, task_status: str | None, obs: RunObservation) -> bool:
    """True when applying `obs` would change nothing: a run that goes on as already recorded.

    Lets a reconcile skip, without reading anything again, the many runs that
    simply keep running; anything else goes through `apply_observation`.
    """
    if obs.phase not in (RUNNING, PENDING) or run.ended:
        return False
    if obs.phase == RUNNING and task_status == Status.LAUNCHING.value:
        return False
    return _unchanged(run, _progress_fields(run, obs))


def apply_observation(
    store: TaskStore,
    obs: RunObservation,
    *,
    send: Send = dispatch.send,
    actor: str = ACTOR,
    lease: tuple[str, str, int] | None = None,
) -> bool:
    """Record what a runner saw; move Launching -> Running; on the end, send FINISH_RUN once.

    Returns True when it sent FINISH_RUN. An ended run is never reopened, and a
    running run never goes back to pending, so the status does not flap.
    With `lease=(name, holder, fencing token)` (the watcher's), what it writes
    is written only while that lease is still held with that token; otherwise
    nothing is and LeaseNotHeld is raised.
    """
    run = store.get_run(obs.run_id)
    if run is None:
        return False
    if run.ended:
        return _finish(store, obs.run_id, send) if not run.finish_sent else False
    fields = _progress_fields(run, obs)
    if obs.phase in (SUCCEEDED, FAILED):
        fields.update(
            phase=obs.phase,
            finished_at=obs.finished_at or time.time(),
            exit_code=obs.exit_code,
            retryable="1" if obs.retryable else "0",
            failure_reason="" if obs.phase == SUCCEEDED else obs.reason[:1000],
        )
        if obs.vanished:
            fields["vanished"] = "1"
        fields.setdefault("started_at", run.started_at or obs.started_at)
        if not store.update_unended_run(obs.run_id, TERMINAL_PHASES, lease=lease, **fields):
            return False  # its end was recorded meanwhile (a cancel, another watcher), with its finish
        return _finish(store, obs.run_id, send)
    if not _unchanged(run, fields):  # a reconcile of 1,000 quiet runs writes nothing
        if not store.update_unended_run(obs.run_id, TERMINAL_PHASES, lease=lease, **fields):
            return False
    if obs.phase == RUNNING:
        task = store.get_task(run.service, run.task_id)
        if task and task.current_run == obs.run_id and task.status == Status.LAUNCHING:
            try:
                store.transition(
                    run.service,
                    run.task_id,
                    Status.RUNNING,
                    reason=f"run {obs.run_id} started",
                    actor=actor,
                    expect=Status.LAUNCHING,
                    lease=lease,
                )
                notify_status(run.service, run.task_id, store=store, task=task)
            except IllegalTransition:
                pass  # moved on meanwhile (cancelled, superseded): nothing to do
    return False


def record_lost(
    store: TaskStore, run_id: str, reason: str, *, send: Send = dispatch.send, lease: tuple[str, str, int] | None = None
) -> bool:
    """The run's Job or process vanished before its end was seen: fail it (retryable) and hand it on."""
    run = store.get_run(run_id)
    if run is None or run.ended:
        return False
    return apply_observation(
        store,
        RunObservation(run_id, FAILED, reason=reason, finished_at=time.time(), retryable=True, vanished=True),
        send=send,
        lease=lease,
    )


def cancel(store: TaskStore, runner: Runner, run_id: str, *, actor: str = "system") -> None:
    """Stop the run and record it Cancelled; an ended run is left as it was."""
    runner.cancel(run_id)
    run = store.get_run(run_id)
    if run is None or run.ended:
        return
    store.update_unended_run(
        run_id,
        TERMINAL_PHASES,
        phase=RunPhase.CANCELLED,
        finished_at=time.time(),
        failure_reason=f"cancelled by {actor}",
        finish_sent="skipped: cancelled",
        outcome=Outcome.CANCELLED,
    )
