"""Outcome: what an ended run means for its task (Succeeded, Failed, a retry, or the next stage).

Idempotent like admission: a redelivered finish finds the task moved on and
only makes sure the run's capacity is free.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from orchestrator import backoff
from orchestrator.coordination.admission import (
    admission_score_of,
    admit_waiting,
    next_run_fields,
    reevaluate_dependents,
)
from orchestrator.coordination.effects import ACTOR, notify, release_run, send
from orchestrator.coordination.outputs import read_end, read_outputs
from orchestrator.coordination.stages import next_stage, stages_of
from orchestrator.delivery.record import CANCELLED, FAILED, NO_CHANGES
from orchestrator.delivery.step import needs_delivery
from orchestrator.logs import bounded_excerpt, scrub
from orchestrator.metrics import registry as metrics
from orchestrator.model import ENDED_PHASES, FinishResult, Run, RunPhase
from orchestrator.runners import get_runner
from orchestrator.settings import Settings
from orchestrator.states import ACTIVE, Status
from orchestrator.steps import Step
from orchestrator.store import IllegalTransition, TaskStore
from orchestrator.usage.record import account_run, at, honest_end
from orchestrator.workspace.layout import checkout_dir

log = logging.getLogger("orchestrator.coordination")


def finish(store: TaskStore, settings: Settings, run_id: str) -> FinishResult | Status:
    """Record the outcome of an ended run: Succeeded, Failed, a retry, or the next pipeline stage.

    Reads the observation the watcher recorded on the run (phase, exit_code,
    failure_reason, retryable, outputs) and the outputs the agent wrote in the
    workspace. Returns what it did, for logs and tests.
    """
    run = store.get_run(run_id)
    if run is None:
        store.release_slot(run_id)
        return FinishResult.NO_RUN
    service, task_id = run.service, run.task_id
    task = store.get_task(service, task_id)
    if task is None:
        release_run(store, service, run_id)
        return FinishResult.NO_TASK
    status = task.status
    if task.current_run != run_id or status not in ACTIVE:
        # Finished already (a redelivery), cancelled, or superseded by new
        # context: only make sure the run's capacity is free.
        _record_end_outcome(store, run)
        if release_run(store, service, run_id):
            admit_waiting(store, settings)
        return FinishResult.NOT_CURRENT
    if run.phase not in ENDED_PHASES:
        return FinishResult.NOT_ENDED  # the watcher records the end before it sends finish

    if run.vanished and run.phase == RunPhase.FAILED:
        run = _judge_vanished(store, settings, run)
    outputs = dict(run.outputs)
    # What the agent wrote is shown and kept: never with a secret in it (the agent holds two).
    secrets = settings.secret_values()
    outputs.update(
        {
            key: scrub(value, secrets) if isinstance(value, str) else value
            for key, value in read_outputs(
                checkout_dir(settings.workspace_root, service, task_id), service, task_id, run_id
            ).items()
        }
    )
    for key in ("branch", "commit", "pull_request_url"):  # what prepare_workspace recorded, unless the agent
        if getattr(run, key) and (run.delivered_at or not outputs.get(key)):  # said otherwise; delivery's wins
            outputs[key] = getattr(run, key)
    if not outputs.get("log_tail"):
        tail = _log_tail(settings, run_id)
        if tail:
            outputs["log_tail"] = tail
    if outputs != run.outputs:
        store.update_run(run_id, outputs=outputs)
    verdict = account_run(store, settings, run, task.agent)  # usage on the run, counted once
    run = honest_end(store, run, verdict)  # exit 0 with an error in the stream is a failure
    if needs_delivery(task, run):
        # The deliver step (commit, push, pull request) runs first and sends finish_run again.
        send(Step.DELIVER_RUN, run_id)
        return FinishResult.DELIVERING
    stage = run.stage
    task_outputs = _merge_outputs(task.outputs, outputs, run, stage)
    now = time.time()
    again = ""  # "retry" or "rate_limit": counted once the move is written

    if run.phase == RunPhase.SUCCEEDED:
        following = next_stage(stages_of(settings, task), stage) if stage else None
        if following is not None:
            fields = next_run_fields(store, settings, task, following.name)
            fields["outputs"] = task_outputs
            target, reason = Status.QUEUED, f"stage {stage} succeeded; stage {following.name} waiting for capacity"
        else:
            fields = {"outputs": task_outputs, "stage": ""}
            target = Status.SUCCEEDED
            reason = f"pipeline completed (run {run_id})" if stage else f"run {run_id} succeeded"
        reason = _delivery_reason(reason, run, stage, bool(task.spec.get("repository")))
        if not run.outcome:
            store.update_run(run_id, outcome=NO_CHANGES)  # no repository: nothing to deliver
    else:
        retryable = run.retryable
        retries = task.retries
        why = run.failure_reason or (
            f"agent exited with code {run.exit_code}" if run.exit_code is not None else "failed"
        )
        if run.outcome != FAILED:
            store.update_run(run_id, outcome=FAILED)
        if verdict.rate_limited_until:  # not the task's failure: wait for the model, as often as it takes
            fields = next_run_fields(
                store, settings, task, stage, retries=retries, not_before=verdict.rate_limited_until
            )
            fields["outputs"] = task_outputs
            target, again = Status.QUEUED, "rate_limit"
            reason = f"model rate limit; resumes at {at(verdict.rate_limited_until)}"
        elif retryable and retries < settings.max_retries:
            # Jittered: runs that failed together (a lost node, an API outage) come back spread out.
            delay = round(backoff.delay(retries, base=settings.retry_backoff_seconds))
            fields = next_run_fields(store, settings, task, stage, retries=retries + 1, not_before=now + delay)
            fields["outputs"] = task_outputs
            target, again = Status.QUEUED, "retry"
            reason = f"run {run_id} failed ({why}); retry {retries + 1} of {settings.max_retries} in {delay}s"
        else:
            fields = {"outputs": task_outputs}
            target = Status.FAILED
            gave_up = f" after {retries} retries" if retryable and retries else ""
            reason = f"stage {stage} failed: {why}{gave_up}" if stage else f"run {run_id} failed: {why}{gave_up}"
    try:
        store.transition(
            service,
            task_id,
            target,
            reason=reason,
            actor=ACTOR,
            expect=status,
            expect_fields={"current_run": run_id},
            fields=fields,
        )
    except IllegalTransition:
        # Cancelled or given new context meanwhile; that path owns the task now.
        if release_run(store, service, run_id):
            admit_waiting(store, settings)
        return FinishResult.RACED
    ended = (run.outcome or NO_CHANGES) if run.phase == RunPhase.SUCCEEDED else FAILED  # as written above
    _count_end(dataclasses.replace(run, outcome=ended), task.agent, again)
    release_run(store, service, run_id)
    notify(service, task_id)  # the end, or the wait before a retry or the next stage
    if target == Status.QUEUED:
        task_after = store.require_task(service, task_id)
        store.add_waiting(service, task_id, admission_score_of(settings, task_after))
        if fields.get("not_before"):
            # Wake the admission when the backoff is over (the re-drive would too, later).
            # (At most half the broker's visibility timeout: a rate limit may last hours, and an early
            # wake-up only finds it "later"; the re-drive starts it once the time has come.)
            send(
                Step.ADMIT,
                service,
                task_id,
                countdown=min(max(0.0, fields["not_before"] - time.time()), settings.broker_visibility_timeout / 2),
            )
    else:
        reevaluate_dependents(store, settings, service, task_id)
    admit_waiting(store, settings)
    return target


def _judge_vanished(store: TaskStore, settings: Settings, run: Run) -> Run:
    """A run whose Job was gone before its end was seen (the watcher away longer than the Job's TTL):
    what it left in its output directory says whether it ended. An agent that wrote outputs.json
    (the contract's last step), or left its exit code, reached its end: its end is recorded from
    that, and a succeeded run is never run again. With nothing there it stays lost (retried)."""
    wrote_outputs, code = read_end(
        checkout_dir(settings.workspace_root, run.service, run.task_id), run.service, run.task_id, run.run_id
    )
    if code is None and not wrote_outputs:
        return run
    seen = "its Job was removed before its end was seen; "
    if code is None or code == 0:
        what = "its exit code 0" if code == 0 else "outputs.json"
        fields: dict[str, Any] = dict(
            phase=RunPhase.SUCCEEDED, exit_code=0, failure_reason="", observed_reason=f"{seen}{what} says it ended"
        )
    else:
        fields = dict(
            phase=RunPhase.FAILED,
            exit_code=code,
            failure_reason=f"agent exited with code {code} ({seen}read from its output directory)",
            observed_reason=f"{seen}its exit code {code} says it failed",
        )
    log.info("run %s: %s", run.run_id, fields["observed_reason"])
    store.update_run(run.run_id, retryable="0", **fields)
    return store.get_run(run.run_id) or run


def _record_end_outcome(store: TaskStore, run: Run) -> None:
    """Give an ended run that is no longer its task's current one its outcome (failed or cancelled)."""
    outcome = {RunPhase.FAILED: FAILED, RunPhase.CANCELLED: CANCELLED}.get(run.phase)
    if outcome and not run.outcome:
        store.update_run(run.run_id, outcome=outcome)
        _count_end(dataclasses.replace(run, outcome=outcome), run.agent)


def _count_end(run: Run, agent: str, again: str = "") -> None:
    """The run's end in the metrics: once, by the finish that moved its task (or gave it its outcome)."""
    seconds = run.finished_at - run.started_at if run.finished_at and run.started_at else None
    metrics.run_ended(
        run.service, run.agent or agent, run.outcome or "unknown", run.failure_reason, seconds, retryable=run.retryable
    )
    if again == "retry":
        metrics.run_retried(run.failure_reason, retryable=run.retryable)
    elif again == "rate_limit":
        metrics.rate_limit_paused(run.agent or agent)


def _delivery_reason(reason: str, run: Run, stage: str, has_repository: bool) -> str:
    """The status reason of a succeeded run, saying plainly what it delivered (or that it changed nothing)."""
    run_id = run.run_id
    if not has_repository:
        return f"{reason}; no repository, nothing delivered"
    if run.outcome == NO_CHANGES:
        what = f"stage {stage} (run {run_id})" if stage else f"run {run_id}"
        return f"{what} finished with no changes" + (f"; {reason}" if stage else "")
    branch, commits = run.branch, run.commits or "?"
    delivered = f"{commits} commit(s) on {branch}" if branch else "changes"
    if run.pull_request_url:
        delivered += f", pull request {run.pull_request_url}"
    return f"{reason}: {delivered}"


LOG_TAIL_LINES = 20


def _log_tail(settings: Settings, run_id: str) -> str:
    """The run's last output lines from its runner, secrets blanked; '' when they cannot be had.

    The watcher usually records them as the run's `log_tail` output; this is
    the fallback, and it never fails the outcome.
    """
    try:
        # One line more than kept: the first may end a secret that began before it, and is dropped
        # once it has served to mask that.
        lines = list(get_runner(settings).logs(run_id, tail=LOG_TAIL_LINES + 1))[-LOG_TAIL_LINES - 1 :]
    except Exception:
        log.info("no output lines for run %s", run_id, exc_info=True)
        return ""
    return bounded_excerpt(lines, settings.secret_values(), LOG_TAIL_LINES)


def _merge_outputs(previous: Mapping[str, Any], outputs: Mapping[str, Any], run: Run, stage: str) -> dict[str, Any]:
    """The task's outputs after this run: the newest known values, and each stage's own."""
    merged = dict(previous)
    for key in ("pull_request_url", "branch", "summary", "commit", "handoff_file", "log_tail"):
        if outputs.get(key):
            merged[key] = outputs[key]
    merged["run_id"] = run.run_id
    merged["exit_code"] = run.exit_code
    if stage:
        stages = dict(merged.get("stages") or {})
        stages[stage] = {k: v for k, v in outputs.items() if k != "log_tail"}
        merged["stages"] = stages
    return merged
