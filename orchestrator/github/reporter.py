"""Reporting back to GitHub: one status comment per task, created once and then edited.

`notify_status` is called by whoever changes a task's status; it only queues
`orchestrator.report_status`, and only for tasks that came from GitHub.
`report_status` is the plain code of that step: it renders the task's current
state (so steps that run late or twice write the newest state, never an old
one) and creates or edits the comment. Reporting never fails a task: errors
here are logged, retried by the step, and then dropped.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator import dispatch, effects
from orchestrator.github.client import GitHubClient, GitHubError
from orchestrator.github.routing import STATUS_MARKER, pull_request_key
from orchestrator.logs import scrub
from orchestrator.model import ReportResult, Task
from orchestrator.settings import Settings, get_settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.github")

LEASE_SECONDS = 60
MAX_REASON = 1500


class ReportLater(Exception):
    """The report could not be written now; the step retries after `countdown` seconds."""

    def __init__(self, message: str, countdown: float):
        super().__init__(message)
        self.countdown = countdown


def github_origin(task: Task | None) -> tuple[str, int] | None:
    """(repo, issue or pull request number) a task came from, or None."""
    github = task.origin.get("github") if task else None
    if not isinstance(github, Mapping):
        return None
    repo, issue = github.get("repo"), github.get("issue", github.get("pull_request"))
    if isinstance(repo, str) and isinstance(issue, int) and not isinstance(issue, bool):
        return repo, issue
    return None


def notify_status(
    service: str,
    task_id: int,
    *,
    store: TaskStore | None = None,
    settings: Settings | None = None,
    task: Task | None = None,
) -> bool:
    """Queue a status report when the task came from GitHub; never raises. True when queued."""
    try:
        settings = settings or get_settings()
        if not settings.github_token:
            return False
        if task is None:
            if store is None:
                from orchestrator.runtime import get_store

                store = get_store()
            task = store.get_task(service, task_id)
        if github_origin(task) is None:
            return False
        dispatch.send(Step.REPORT_STATUS, service, int(task_id))
        return True
    except Exception as exc:  # a report is never worth failing the caller for
        log.warning("could not queue the GitHub status report of %s/%s: %s", service, task_id, type(exc).__name__)
        return False


_HEADLINES = {
    Status.PENDING: "⏳ Pending: waiting to be admitted",
    Status.QUEUED: "⏳ Queued",
    Status.BLOCKED: "⏸️ Blocked",
    Status.PREPARING: "🛠️ Preparing the workspace",
    Status.LAUNCHING: "🚀 Launching",
    Status.RUNNING: "🏃 Running",
    Status.SUCCEEDED: "✅ Succeeded",
    Status.FAILED: "❌ Failed",
    Status.CANCELLED: "🛑 Cancelled",
}


def _clean(text: str, secrets: list[str]) -> str:
    text = scrub(text, secrets)
    # No mentions from our text: a reason quoting "@someone" must not ping them.
    return text.replace("@", "@\u200b")[:MAX_REASON]


def render_status(
    task: Task, *, job_name: str = "", secrets: list[str] | None = None, now: datetime | None = None
) -> str:
    """The Markdown of a task's status comment (pure)."""
    secrets = secrets or []
    status = task.status
    ref = f"{task.service}/{task.id}"
    lines = [f"{STATUS_MARKER} {ref} -->", f"**Orchestrator** · task `{ref}` · agent `{task.agent}`", ""]
    headline = _HEADLINES[status]
    if job_name and status in (Status.LAUNCHING, Status.RUNNING):
        headline += f" (Job `{_clean(job_name, secrets)}`)"
    lines.append(f"**{headline}**")
    reason = task.status_reason
    if reason and status != Status.SUCCEEDED:
        lines += ["", f"Reason: {_clean(reason, secrets)}"]
    pull_request = task.outputs.get("pull_request_url")
    if isinstance(pull_request, str) and pull_request.startswith("https://"):
        lines += ["", f"Pull request: {_clean(pull_request, secrets)}"]
    outcome = task.pull_request_outcome
    if outcome:
        lines += ["", f"Pull request {_clean(str(outcome), secrets)}."]
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines += ["", f"<sub>Updated {stamp}. Commands: `run`, `cancel`, `retry`, `status`.</sub>"]
    return "\n".join(lines)


def _job_name(store: TaskStore, task: Task) -> str:
    run = store.get_run(task.current_run) if task.current_run else None
    return run.job_name if run else ""


def _comment_id(comment: Mapping[str, Any] | None) -> str | None:
    return str(comment["id"]) if comment else None


def report_status(
    store: TaskStore, settings: Settings, service: str, task_id: int, *, client: GitHubClient | None = None
) -> ReportResult:
    """Create or edit the task's status comment; returns created, updated, unchanged or skipped.

    Raises ReportLater when GitHub or the per-task lock says "not now".
    """
    if not settings.github_token:
        return ReportResult.SKIPPED
    lease = f"github-status:{service}/{task_id}"
    holder = uuid.uuid4().hex
    if not store.acquire_lease(lease, holder, LEASE_SECONDS):
        raise ReportLater(f"another report of {service}/{task_id} is being written", countdown=2)
    try:
        task = store.get_task(service, task_id)  # read under the lock: the newest state wins
        origin = github_origin(task)
        if task is None or origin is None:
            return ReportResult.SKIPPED
        repo, issue = origin
        key = pull_request_key(task.outputs.get("pull_request_url"))
        if key:
            store.link_pull_request(key, service, task_id)
        body = render_status(task, job_name=_job_name(store, task), secrets=settings.secret_values())
        # The timestamp line changes every time; compare what matters.
        digest = hashlib.sha256(body.rsplit("\n", 1)[0].encode()).hexdigest()
        comment_id = task.github_status_comment or ""
        if comment_id and task.github_status_digest == digest:
            return ReportResult.UNCHANGED
        client = client or GitHubClient.from_settings(settings)
        action = ReportResult.UPDATED
        try:
            if comment_id.isdigit():
                try:
                    client.update_comment(repo, int(comment_id), body)
                except GitHubError as exc:
                    if exc.status != 404:
                        raise
                    comment_id = ""  # someone deleted it: write a new one
                    store.forget_effect(effects.COMMENT, f"{service}/{task_id}:{repo}#{issue}")
            if not comment_id.isdigit():
                # GitHub has no 409 for a second comment: the create is recorded as intent and
                # completion, and an interrupted one is resolved by finding our comment by its marker.
                marker = f"{STATUS_MARKER} {service}/{task_id} -->"
                subject = f"{service}/{task_id}:{repo}#{issue}"
                done = effects.once(
                    store,
                    effects.COMMENT,
                    subject,
                    act=lambda: str(client.create_comment(repo, issue, body)["id"]),
                    find=lambda: _comment_id(client.find_comment(repo, issue, marker)),
                    lease_seconds=LEASE_SECONDS,
                )
                if done.result is None:
                    raise ReportLater(f"another report of {service}/{task_id} is creating its comment", countdown=2)
                if done.how != "acted":
                    client.update_comment(repo, int(done.result), body)  # created before: bring it up to date
                store.update_task(service, task_id, github_status_comment=done.result)
                action = ReportResult.CREATED
        except GitHubError as exc:
            if exc.transient:
                raise ReportLater(str(exc), countdown=max(exc.retry_after or 0, 5)) from None
            log.warning("GitHub refused the status report of %s/%s: %s", service, task_id, exc)
            return ReportResult.REFUSED
        store.update_task(service, task_id, github_status_digest=digest)
        return action
    finally:
        store.release_lease(lease, holder)
