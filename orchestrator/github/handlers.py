"""What a routed GitHub event does to tasks: the plain code behind `orchestrator.handle_event`.

Handlers act only through `orchestrator.operations` and the store. Each one is
safe to run twice: creating a task that exists, cancelling a cancelled task or
retrying a running one is refused and reported as ignored; the delivery is
also marked handled, so a redelivered step does not add the same context twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator import dispatch, validation, operations
from orchestrator.github import reporter
from orchestrator.github.commands import parse_command
from orchestrator.github.hidden import removal_note, strip_hidden
from orchestrator.github.routing import GitHubConfig, dig, match, number, pull_request_key, task_id_of_branch
from orchestrator.validation import agent_name
from orchestrator.model import Task
from orchestrator.settings import Settings
from orchestrator.states import RETRYABLE_FROM, TERMINAL
from orchestrator.store import TaskExists, TaskStore
from orchestrator.steps import Step

log = logging.getLogger("orchestrator.github")

MAX_TITLE = 200
MAX_DOCUMENT = 60_000  # GitHub caps an issue body at 65536 characters; keep room for the heading
PR_SCAN_LIMIT = 200


@dataclass(frozen=True)
class EventContext:
    """One routed delivery and what its handler may use."""

    store: TaskStore
    settings: Settings
    config: GitHubConfig
    delivery_id: str
    event: str
    payload: Mapping[str, Any]

    @property
    def actor(self) -> str:
        login = dig(self.payload, "sender", "login")
        return f"github:{login}" if isinstance(login, str) else "github"

    @property
    def repo(self) -> str:
        return str(dig(self.payload, "repository", "full_name"))

    @property
    def service(self) -> str | None:
        return self.config.service_for(self.repo)[0]


@dataclass(frozen=True)
class Outcome:
    """What a handler did: `changed` or `ignored`, about which task, and a sentence."""

    status: str
    detail: str
    task: tuple[str, int] | None = None


def _ignored(detail: str, task: tuple[str, int] | None = None) -> Outcome:
    return Outcome("ignored", detail, task)


def _changed(ctx: EventContext, detail: str, task: tuple[str, int]) -> Outcome:
    reporter.notify_status(task[0], task[1], store=ctx.store, settings=ctx.settings)
    return Outcome("changed", detail, task)


# Task documents ---------------------------------------------------------------------

def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _visible(value: Any, limit: int, what: str) -> tuple[str, str]:
    """The text GitHub displays (HTML comments removed), and the note to add when any were."""
    text, removed = strip_hidden(_text(value, limit))
    return text, (removal_note(what) + "\n") if removed else ""


def task_spec_from_issue(payload: Mapping[str, Any], service: str, agent: str) -> dict[str, Any]:
    """The task spec of an issue: its title and body become the task document."""
    issue_number = number(dig(payload, "issue", "number"))
    title = _text(dig(payload, "issue", "title"), MAX_TITLE).strip() or f"Issue #{issue_number}"
    body, note = _visible(dig(payload, "issue", "body"), MAX_DOCUMENT, "this issue")
    url = _text(dig(payload, "issue", "html_url"), 500)
    full_name = str(dig(payload, "repository", "full_name"))
    branch = dig(payload, "repository", "default_branch")
    # The payload's own clone URL, so a GitHub Enterprise host works too; checked by the caller.
    clone_url = dig(payload, "repository", "clone_url")
    document = f"# {title}\n\n{body.strip()}\n\n---\n{note}From GitHub issue {full_name}#{issue_number}: {url}\n"
    return {
        "id": issue_number,
        "title": title,
        "description": title,
        "details": body,  # without hidden comments, like the document
        "test_strategy": "",
        "priority": "medium",
        "status": "pending",
        "dependencies": [],
        "subtasks": [],
        "service_name": service,
        "agent_name": agent,
        "markdown_files": [{"filename": "task.md", "content": document, "file_type": "task"}],
        "repository": {
            "url": clone_url if isinstance(clone_url, str) and clone_url else f"https://github.com/{full_name}.git",
            "branch": branch if isinstance(branch, str) and branch else "main",
        },
    }


def issue_origin(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The `origin` of a task created from an issue."""
    return {"github": {
        "repo": str(dig(payload, "repository", "full_name")),
        "issue": number(dig(payload, "issue", "number")),
        "url": _text(dig(payload, "issue", "html_url"), 500),
    }}


def _review_document(ctx: EventContext) -> dict[str, Any]:
    p = ctx.payload
    pr = number(dig(p, "pull_request", "number"))
    if ctx.event == "pull_request_review":
        item_id, user = dig(p, "review", "id"), dig(p, "review", "user", "login")
        body, note = _visible(dig(p, "review", "body"), MAX_DOCUMENT, "this review")
        url = _text(dig(p, "review", "html_url"), 500)
        heading = f"Changes requested by @{user} on pull request #{pr}"
        where = ""
    else:
        item_id, user = dig(p, "comment", "id"), dig(p, "comment", "user", "login")
        body, note = _visible(dig(p, "comment", "body"), MAX_DOCUMENT, "this comment")
        url = _text(dig(p, "comment", "html_url"), 500)
        heading = f"Review comment by @{user} on pull request #{pr}"
        path, line = dig(p, "comment", "path"), dig(p, "comment", "line")
        hunk = strip_hidden(_text(dig(p, "comment", "diff_hunk"), 5000))[0]
        where = f"File `{path}`" + (f", line {line}" if isinstance(line, int) else "") + "\n\n" if path else ""
        if hunk:
            where += f"```diff\n{hunk}\n```\n\n"
    kind = "review" if ctx.event == "pull_request_review" else "review-comment"
    safe_id = item_id if isinstance(item_id, int) else ctx.delivery_id
    return {
        "filename": f"{kind}-{safe_id}.md",
        "content": f"# {heading}\n\n{where}{body.strip() or '(no text)'}\n\n---\n{note}{url}\n",
        "file_type": "context",
        "source": {"github": {"repo": ctx.repo, "pull_request": pr, "url": url, "delivery": ctx.delivery_id}},
    }


def _comment_document(ctx: EventContext, text: str) -> dict[str, Any]:
    text, note = _visible(text, MAX_DOCUMENT, "this comment")
    user = dig(ctx.payload, "comment", "user", "login")
    url = _text(dig(ctx.payload, "comment", "html_url"), 500)
    comment_id = dig(ctx.payload, "comment", "id")
    return {
        "filename": f"comment-{comment_id if isinstance(comment_id, int) else ctx.delivery_id}.md",
        "content": f"# Request by @{user}\n\n{text.strip()}\n\n---\n{note}{url}\n",
        "file_type": "context",
        "source": {"github": {"repo": ctx.repo, "issue": number(dig(ctx.payload, "issue", "number")), "url": url,
                              "delivery": ctx.delivery_id}},
    }


# Finding our task ---------------------------------------------------------------------

def _owns_issue(task: Task, repo: str, issue: int) -> bool:
    origin = task.origin.get("github")
    return (isinstance(origin, Mapping) and str(origin.get("repo", "")).lower() == repo.lower()
            and origin.get("issue") == issue)


def find_task_for_pull_request(
    store: TaskStore, config: GitHubConfig, key: str | None, *, repo: str,
    head_ref: Any = None, head_repo: Any = None,
) -> tuple[str, int] | None:
    """The task that opened this pull request: by link, by its branch (ORCHESTRATOR_BRANCH_TEMPLATE), or by its outputs."""
    if key is None:
        return None
    linked = store.task_for_pull_request(key)
    if linked and store.get_task(*linked):
        return linked
    service, _ = config.service_for(repo)
    if service is None:
        return None
    # A branch named task-<id> counts only in the mapped repository itself: a
    # fork can name its branch anything.
    branch_task = task_id_of_branch(head_ref, config.branch_template, service)
    if branch_task is not None and isinstance(head_repo, str) and head_repo.lower() == repo.lower():
        if store.get_task(service, branch_task):
            store.link_pull_request(key, service, branch_task)
            return service, branch_task
    tasks, _ = store.list_tasks(service=service, limit=PR_SCAN_LIMIT)
    for task in tasks:
        if pull_request_key(task.outputs.get("pull_request_url")) == key:
            store.link_pull_request(key, service, task.id)
            return service, task.id
    return None


def _pull_request_task(ctx: EventContext) -> tuple[str, int] | None:
    p = ctx.payload
    return find_task_for_pull_request(
        ctx.store, ctx.config, pull_request_key(dig(p, "pull_request", "html_url")), repo=ctx.repo,
        head_ref=dig(p, "pull_request", "head", "ref"), head_repo=dig(p, "pull_request", "head", "repo", "full_name"),
    )


# Handlers ------------------------------------------------------------------------------

def create_task_from_issue(ctx: EventContext) -> Outcome:
    """Create the task of a labelled issue (or of `/orchestrator run` on an issue without one)."""
    service = ctx.service
    if service is None:
        return _ignored(ctx.config.service_for(ctx.repo)[1])
    try:
        agent = agent_name(ctx.config.default_agent)
    except ValueError as exc:
        return _ignored(f"ORCHESTRATOR_DEFAULT_AGENT is refused: {exc}")
    spec = task_spec_from_issue(ctx.payload, service, agent)
    if not isinstance(spec["id"], int) or spec["id"] < 1:
        return _ignored("the issue has no valid number")
    # The same rules as a task submitted through the API: signed or not, a
    # payload names the repository and branch that git will be run on.
    try:
        validation.git_url(spec["repository"]["url"], tuple(ctx.settings.allowed_git_hosts))
        validation.git_ref(spec["repository"]["branch"])
    except ValueError as exc:
        return _ignored(f"the issue's repository is refused: {exc}")
    ref = (service, spec["id"])
    try:
        operations.submit_task(ctx.store, spec, actor=ctx.actor, origin=issue_origin(ctx.payload))
    except TaskExists:
        return _ignored(f"task {service}/{spec['id']} already exists", ref)
    return _changed(ctx, f"created task {service}/{spec['id']}", ref)


def run_command(ctx: EventContext) -> Outcome:
    """Act on `/orchestrator run|cancel|retry|status` in a comment on an issue or pull request of ours."""
    command = parse_command(dig(ctx.payload, "comment", "body"), ctx.config.command_prefix)
    if command is None:  # the route checked it; a changed prefix between intake and now
        return _ignored("the comment holds no command")
    issue = number(dig(ctx.payload, "issue", "number"))
    service = ctx.service
    if service is None or issue is None:
        return _ignored("the comment is not on an issue of a mapped repository")
    is_pull_request = dig(ctx.payload, "issue", "pull_request") is not None
    ref: tuple[str, int] | None
    if is_pull_request:
        ref = find_task_for_pull_request(
            ctx.store, ctx.config, pull_request_key(dig(ctx.payload, "issue", "pull_request", "html_url")),
            repo=ctx.repo)
    else:
        task = ctx.store.get_task(service, issue)
        ref = (service, issue) if task and _owns_issue(task, ctx.repo, issue) else None
        if task and ref is None:
            return _ignored(f"task {service}/{issue} was not created from {ctx.repo}#{issue}")
    if ref is None:
        if command.word == "run" and not is_pull_request:
            return create_task_from_issue(ctx)
        what = "a pull request" if is_pull_request else "an issue"
        return _ignored(f"{ctx.repo}#{issue} is not {what} this system owns")
    return _COMMANDS[command.word](ctx, ref, command.argument)


def _command_run(ctx: EventContext, ref: tuple[str, int], argument: str) -> Outcome:
    task = ctx.store.require_task(*ref)
    status = task.status
    if status in RETRYABLE_FROM:
        return _command_retry(ctx, ref, argument)
    if status in TERMINAL:
        body = str(dig(ctx.payload, "comment", "body"))
        operations.add_context(ctx.store, *ref, _comment_document(ctx, body), actor=ctx.actor)
        return _changed(ctx, f"started task {ref[0]}/{ref[1]} again with the comment as context", ref)
    return _ignored(f"task {ref[0]}/{ref[1]} is {status}; it is already on its way", ref)


def _command_cancel(ctx: EventContext, ref: tuple[str, int], argument: str) -> Outcome:
    try:
        operations.cancel_task(ctx.store, *ref, actor=ctx.actor, reason=f"cancelled by {ctx.actor} on GitHub")
    except operations.OperationRefused as exc:
        return _ignored(str(exc), ref)
    return _changed(ctx, f"cancelled task {ref[0]}/{ref[1]}", ref)


def _command_retry(ctx: EventContext, ref: tuple[str, int], argument: str) -> Outcome:
    try:
        operations.retry_task(ctx.store, *ref, actor=ctx.actor)
    except operations.OperationRefused as exc:
        return _ignored(str(exc), ref)
    return _changed(ctx, f"retrying task {ref[0]}/{ref[1]}", ref)


def _command_status(ctx: EventContext, ref: tuple[str, int], argument: str) -> Outcome:
    reporter.notify_status(*ref, store=ctx.store, settings=ctx.settings)
    return Outcome("reported", f"status of task {ref[0]}/{ref[1]} queued for reporting", ref)


_COMMANDS: dict[str, Callable[[EventContext, tuple[str, int], str], Outcome]] = {
    "run": _command_run,
    "cancel": _command_cancel,
    "retry": _command_retry,
    "status": _command_status,
}


def follow_up_on_review(ctx: EventContext) -> Outcome:
    """Changes requested or a review comment on our pull request: run again with the review as context."""
    ref = _pull_request_task(ctx)
    if ref is None:
        return _ignored(f"pull request {ctx.repo}#{dig(ctx.payload, 'pull_request', 'number')} is not one of ours")
    if dig(ctx.payload, "pull_request", "state") == "closed":
        return _ignored(f"pull request of task {ref[0]}/{ref[1]} is closed", ref)
    operations.add_context(ctx.store, *ref, _review_document(ctx), actor=ctx.actor)
    return _changed(ctx, f"task {ref[0]}/{ref[1]} runs again with the review as new context", ref)


def close_pull_request(ctx: EventContext) -> Outcome:
    """Our pull request was closed: record the outcome, stop the task if needed, release the workspace."""
    ref = _pull_request_task(ctx)
    if ref is None:
        return _ignored(f"pull request {ctx.repo}#{dig(ctx.payload, 'pull_request', 'number')} is not one of ours")
    merged = dig(ctx.payload, "pull_request", "merged") is True
    outcome = "merged" if merged else "closed"
    task = ctx.store.require_task(*ref)
    if task.status not in TERMINAL:
        try:
            operations.cancel_task(ctx.store, *ref, actor=ctx.actor, reason=f"pull request {outcome} on GitHub")
        except operations.OperationRefused:
            pass  # it ended meanwhile; the outcome below still holds
    ctx.store.update_task(*ref, pull_request_outcome=outcome,
                          pull_request_url=_text(dig(ctx.payload, "pull_request", "html_url"), 500))
    try:
        dispatch.send(Step.CLEANUP_WORKSPACE, ref[0], ref[1])
    except dispatch.QueueUnavailable:
        log.warning("could not queue the workspace cleanup of %s/%s", *ref)
    return _changed(ctx, f"task {ref[0]}/{ref[1]}: pull request {outcome}; workspace released", ref)


HANDLERS: dict[str, Callable[[EventContext], Outcome]] = {
    "create_task_from_issue": create_task_from_issue,
    "run_command": run_command,
    "follow_up_on_review": follow_up_on_review,
    "close_pull_request": close_pull_request,
}


def handle_event(store: TaskStore, settings: Settings, delivery_id: str, event: str,
                 payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Route one queued delivery and act on it; returns what was done (for logs and tests).

    Without `payload`, the delivery's pending copy in the store is the payload:
    the receiver keeps the body there once, and queues only the delivery id.
    """
    if store.event_handled(delivery_id):
        return {"delivery": delivery_id, "status": "duplicate", "detail": "already handled"}
    if payload is None:
        pending = store.pending_event(delivery_id)
        if pending is None:
            log.warning("github delivery %s (%s): its payload is no longer kept (expired); nothing done",
                        delivery_id, event)
            return {"delivery": delivery_id, "status": "expired", "detail": "the payload is no longer kept"}
        try:
            payload = orjson.loads(pending[1])  # the parser the receiver accepted it with (same depth limit)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):  # the receiver parsed it before keeping it: a damaged copy
            store.mark_event_handled(delivery_id, settings.delivery_ttl_seconds)
            log.error("github delivery %s (%s): the kept payload is not a JSON object; dropped", delivery_id, event)
            return {"delivery": delivery_id, "status": "ignored", "detail": "the kept payload is not a JSON object"}
    config = GitHubConfig.from_settings(settings)
    decision = match(event, payload, config)
    if decision.handler is None:
        outcome = Outcome("ignored", decision.reason)
    else:
        ctx = EventContext(store, settings, config, delivery_id, event, payload)
        outcome = HANDLERS[decision.handler](ctx)
    store.mark_event_handled(delivery_id, settings.delivery_ttl_seconds)
    log.info("github delivery %s (%s): %s: %s", delivery_id, event, outcome.status, outcome.detail)
    result: dict[str, Any] = {"delivery": delivery_id, "status": outcome.status, "detail": outcome.detail,
                              "handler": decision.handler}
    if outcome.task:
        result["task"] = f"{outcome.task[0]}/{outcome.task[1]}"
    return result
