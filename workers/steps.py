"""Pipeline steps. Each one only unpacks ids and calls plain code that does the work."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from orchestrator import backoff, runs
from orchestrator.coordination import admission, outcome
from orchestrator.model import PrepareAction
from orchestrator.runtime import get_store
from orchestrator.settings import get_settings
from orchestrator.steps import Step
from orchestrator.store import StoreUnavailable
from orchestrator.workspace.cleanup import sweep
from orchestrator.workspace.step import prepare_for_run
from workers.app import app

log = logging.getLogger("orchestrator.steps")


def step(which: Step, **options: Any) -> Any:
    """`app.task` under the step's Celery name (its queue comes from the routes, built from the same `Step`)."""
    return app.task(name=which.value, **options)


@step(Step.PROBE, bind=True, ignore_result=False, acks_late=False)
def probe(self: Task) -> dict[str, Any]:
    """Answer which worker and queue took the message (liveness and routing checks)."""
    info = self.request.delivery_info or {}
    return {"hostname": self.request.hostname or socket.gethostname(), "queue": info.get("routing_key")}


@step(Step.HANDLE_EVENT, bind=True, max_retries=20)
def handle_event(self: Task, delivery_id: str, event: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Act on one verified GitHub delivery (routing and handlers in orchestrator.github.handlers).

    The message names the delivery; its payload is read from the store's pending copy,
    which only the receiver writes after checking the signature. A payload inside the
    message is never used: anyone who can queue a message would bypass the HMAC.
    """
    from orchestrator.github import handlers

    if payload is not None:
        log.warning(
            "github delivery %s (%s): a payload inside the message was ignored; only the kept copy counts",
            delivery_id,
            event,
        )
    try:
        return handlers.handle_event(get_store(), get_settings(), delivery_id, event)
    except StoreUnavailable as exc:  # Redis away: 1 s, 2 s, 4 s... at most a minute, jittered
        raise self.retry(exc=exc, countdown=backoff.delay(self.request.retries or 0, base=1.0, cap=60.0)) from None


@step(Step.REPORT_STATUS, bind=True, max_retries=8)
def report_status(self: Task, service: str, task_id: int, trailing: bool = False) -> str:
    """Create or edit the task's GitHub status comment; a failure here never fails the task.

    `trailing`: this is the edit scheduled for the end of the comment's edit interval.
    """
    from orchestrator.github import reporter

    try:
        return reporter.report_status(get_store(), get_settings(), service, int(task_id), trailing=bool(trailing))
    except (reporter.ReportLater, StoreUnavailable) as exc:
        # 5 s, 10 s, 20 s... jittered, and never sooner than GitHub (or the report lock) asked.
        countdown = backoff.delay(
            self.request.retries or 0, base=5.0, cap=300.0, retry_after=getattr(exc, "countdown", None)
        )
        if getattr(exc, "rate_limited", False):
            # GitHub asked us to wait: waiting is the fix, so the newest state is never given up for it.
            raise self.retry(countdown=countdown, exc=exc, max_retries=None) from None
        if self.request.retries >= self.max_retries:
            log.warning("gave up reporting the status of %s/%s to GitHub: %s", service, task_id, exc)
            return "gave-up"
        raise self.retry(countdown=countdown, exc=exc) from None


_runners: dict[int, tuple[Any, Any]] = {}  # pid -> (settings, runner)


def _runner() -> Any:
    """This process's runner, built once per settings: building a Kubernetes one reads the
    kubeconfig (YAML) and opens a new connection pool, which cost more than the launch itself."""
    from orchestrator.runners import get_runner

    settings = get_settings()
    cached = _runners.get(os.getpid())
    if cached is None or cached[0] is not settings:
        cached = _runners[os.getpid()] = (settings, get_runner(settings))
    return cached[1]


@step(Step.LAUNCH_RUN, bind=True, max_retries=None)
def launch_run(self: Task, run_id: str) -> str | None:
    """Start a run's Job (or local process), or adopt it when it exists already."""
    # A platform that refuses for now comes back as LaunchLater; the bound lives in the plain code.
    try:
        return runs.launch(get_store(), get_settings(), _runner(), run_id, retries=self.request.retries or 0)
    except runs.LaunchLater as later:
        raise self.retry(countdown=later.countdown, max_retries=None) from None


@step(Step.CANCEL_RUN)
def cancel_run(run_id: str) -> None:
    """Stop a run (delete its Job with its pods, or terminate its process group)."""
    runs.cancel(get_store(), _runner(), run_id)


@step(Step.PREPARE_WORKSPACE, bind=True, max_retries=None)
def prepare_workspace(self: Task, run_id: str) -> dict[str, Any]:
    """Prepare the run's workspace and hand the run to launch_run (see orchestrator.workspace.step)."""

    # Busy lease and transient git failures come back as "retry" with a countdown;
    # the bounds live in the plain code, so the step itself retries without limit.
    try:
        result = prepare_for_run(get_store(), get_settings(), run_id, retries=self.request.retries or 0)
    except (StoreUnavailable, SoftTimeLimitExceeded) as exc:
        # Redis away or git too slow for the step: the task is still in Preparing, so try again later.
        raise self.retry(exc=exc, countdown=10, max_retries=30) from exc
    if result.action == PrepareAction.RETRY:
        raise self.retry(countdown=result.countdown, max_retries=None)
    return {"action": result.action, "message": result.message}


@step(Step.DELIVER_RUN, bind=True, max_retries=None)
def deliver_run(self: Task, run_id: str) -> dict[str, Any]:
    """Commit, push and open or update the pull request of a succeeded run, then finish it (orchestrator.delivery)."""
    from orchestrator.delivery.step import deliver_run as deliver

    # Transient failures come back as "retry" with a countdown; the bound lives in the plain code, which
    # counts failures on the run: Celery's own count also has the waits for GitHub's rate limit, which are
    # no failures.
    try:
        result = deliver(get_store(), get_settings(), run_id)
    except (StoreUnavailable, SoftTimeLimitExceeded) as exc:
        raise self.retry(exc=exc, countdown=10, max_retries=30) from None
    if result.action == "retry":
        raise self.retry(countdown=result.countdown, max_retries=None)
    return {"action": result.action, "message": result.message}


@step(Step.CLEANUP_WORKSPACE)
def cleanup_workspace(service: str | None = None, task_id: int | None = None) -> dict[str, Any]:
    """Sweep the task files of tasks that ended for good and record the workspace's disk use.

    A closed pull request names its task; the sweep covers it with every other
    ended task, so the arguments only say why the sweep runs now.
    """

    report = sweep(get_store(), get_settings())
    return {"removed": report.removed, "busy": report.busy, "disk_bytes": report.disk_bytes}


@step(Step.ADMIT)
def admit(service: str, task_id: int) -> None:
    """Decide Blocked or Queued for the task and start waiting tasks as capacity allows."""
    admission.admit(get_store(), get_settings(), service, int(task_id))


@step(Step.FINISH_RUN)
def finish_run(run_id: str) -> None:
    """Record the outcome of an ended run and move the tasks it affects."""
    outcome.finish(get_store(), get_settings(), run_id)
