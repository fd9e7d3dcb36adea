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
from typing import Any

from orchestrator import dispatch, effects
from orchestrator.github.client import GitHubClient, GitHubError
from orchestrator.github.routing import STATUS_MARKER, pull_request_key
from orchestrator.github.status_text import render_status
from orchestrator.model import ReportResult, Run, Task
from orchestrator.settings import Settings, get_settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.github")

LEASE_SECONDS = 60
# One comment is edited at most once per this many seconds (GitHub's advice for content-creating requests
# is to space them; a task moving Queued -> Preparing -> Launching -> Running in a second needs one edit).
EDIT_INTERVAL_SECONDS = 10.0
# How long a scheduled later edit is trusted to come before another report schedules one again.
TRAILING_GRACE_SECONDS = 60


class ReportLater(Exception):
    """The report could not be written now; the step retries after `countdown` seconds.

    `rate_limited`: GitHub (or the shared budget) asked to wait; such a retry is not
    counted against the step's limit, so the newest state is never dropped for it.
    """

    def __init__(self, message: str, countdown: float, *, rate_limited: bool = False):
        super().__init__(message)
        self.countdown = countdown
        self.rate_limited = rate_limited


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
    dispatcher: dispatch.Dispatcher | None = None,
) -> bool:
    """Queue a status report when the task came from GitHub; never raises. True when queued.

    `dispatcher`: the caller's, when it has its own (the API's is handed to its app, not installed).
    """
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
        (dispatcher or dispatch.current()).send(Step.REPORT_STATUS, service, int(task_id))
        return True
    except Exception as exc:  # a report is never worth failing the caller for
        log.warning("could not queue the GitHub status report of %s/%s: %s", service, task_id, type(exc).__name__)
        return False


def _current_run(store: TaskStore, task: Task) -> Run | None:
    return store.get_run(task.current_run) if task.current_run else None


def _comment_id(comment: Mapping[str, Any] | None) -> str | None:
    return str(comment["id"]) if comment else None


def report_status(
    store: TaskStore,
    settings: Settings,
    service: str,
    task_id: int,
    *,
    client: GitHubClient | None = None,
    trailing: bool = False,
) -> ReportResult:
    """Create or edit the task's status comment; returns what it did (see ReportResult).

    One comment is edited at most once per EDIT_INTERVAL_SECONDS.
    A change inside that interval is not dropped: the first one schedules a later
    edit (`trailing=True`, sent with a countdown) and the others leave it to that one
    (`coalesced`); the later edit renders the task as it is then, so the last state
    always lands. Raises ReportLater when GitHub or the per-task lock says "not now".
    """
    if not settings.github_token:
        return ReportResult.SKIPPED
    lease = f"github-status:{service}/{task_id}"
    holder = uuid.uuid4().hex
    if not store.acquire_lease(lease, holder, LEASE_SECONDS):
        raise ReportLater(f"another report of {service}/{task_id} is being written", countdown=2)
    ref = f"{service}/{task_id}"
    try:
        task = store.get_task(service, task_id)  # read under the lock: the newest state wins
        origin = github_origin(task)
        if task is None or origin is None:
            return ReportResult.SKIPPED
        repo, issue = origin
        key = pull_request_key(task.outputs.get("pull_request_url"))
        if key:
            store.link_pull_request(key, service, task_id)
        body = render_status(task, run=_current_run(store, task), secrets=settings.secret_values())
        # The timestamp line changes every time; compare what matters.
        digest = hashlib.sha256(body.rsplit("\n", 1)[0].encode()).hexdigest()
        comment_id = task.github_status_comment or ""
        if comment_id and task.github_status_digest == digest:
            if trailing:
                store.clear_trailing_edit(ref)
            return ReportResult.UNCHANGED
        interval = EDIT_INTERVAL_SECONDS
        wait = store.comment_edit_wait(ref) if comment_id.isdigit() else 0.0
        if wait > 0:
            return _later(store, service, task_id, wait, trailing=trailing)
        client = client or GitHubClient.from_settings(settings, store=store)
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
                countdown = max(exc.retry_after or 0, 5)
                raise ReportLater(str(exc), countdown=countdown, rate_limited=exc.rate_limited) from None
            log.warning("GitHub refused the status report of %s/%s: %s", service, task_id, exc)
            return ReportResult.REFUSED
        store.update_task(service, task_id, github_status_digest=digest)
        store.mark_comment_edited(ref, interval)
        if trailing:
            store.clear_trailing_edit(ref)
        return action
    finally:
        store.release_lease(lease, holder)


def _later(store: TaskStore, service: str, task_id: int, wait: float, *, trailing: bool) -> ReportResult:
    """Inside the edit interval: schedule the one later edit, or leave it to the one already scheduled."""
    ref = f"{service}/{task_id}"
    if not trailing and not store.claim_trailing_edit(ref, wait + TRAILING_GRACE_SECONDS):
        return ReportResult.COALESCED
    store.keep_trailing_edit(ref, wait + TRAILING_GRACE_SECONDS)
    try:
        dispatch.send(Step.REPORT_STATUS, service, int(task_id), True, countdown=wait)
    except dispatch.QueueUnavailable:
        store.clear_trailing_edit(ref)  # nobody will come: the next report schedules it again
        raise ReportLater(f"could not schedule the next edit of {ref}", countdown=wait) from None
    return ReportResult.DEFERRED
