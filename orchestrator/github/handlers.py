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
from typing import Any, TypeVar

import orjson

from orchestrator import dispatch, operations, validation
from orchestrator.github import reporter
from orchestrator.github.client import GitHubClient, GitHubError
from orchestrator.github.commands import parse_command
from orchestrator.github.documents import (
    bounded_text,
    comment_document,
    issue_origin,
    review_document,
    review_of,
    task_spec_from_issue,
    with_review_comments,
)
from orchestrator.github.event import EventContext
from orchestrator.github.routing import GitHubConfig, dig, match, number, pull_request_key, task_id_of_branch
from orchestrator.metrics import registry as metrics
from orchestrator.model import Task
from orchestrator.settings import VARIABLES, Settings
from orchestrator.states import RETRYABLE_FROM, TERMINAL
from orchestrator.steps import Step
from orchestrator.store import LimitReached, TaskExists, TaskStore
from orchestrator.validation import agent_name

log = logging.getLogger("orchestrator.github")
T = TypeVar("T")

PR_SCAN_LIMIT = 200


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


def _owns_issue(task: Task, repo: str, issue: int) -> bool:
    origin = task.origin.get("github")
    return (
        isinstance(origin, Mapping)
        and str(origin.get("repo", "")).lower() == repo.lower()
        and origin.get("issue") == issue
    )


def _issue_task(store: TaskStore, service: str, repo: str, issue: int) -> tuple[str, int] | None:
    """The task made from `repo`#`issue`: in the issues' id space, or (made before it) the bare number."""
    for task_id in (validation.issue_task_id(issue), issue):
        task = store.get_task(service, task_id)
        if task and _owns_issue(task, repo, issue):
            return service, task_id
    return None


def find_task_for_pull_request(
    store: TaskStore,
    config: GitHubConfig,
    key: str | None,
    *,
    repo: str,
    head_ref: Any = None,
    head_repo: Any = None,
) -> tuple[str, int] | None:
    """The task that opened this pull request: by link, by its branch (the branch template), or by its outputs."""
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
        ctx.store,
        ctx.config,
        pull_request_key(dig(p, "pull_request", "html_url")),
        repo=ctx.repo,
        head_ref=dig(p, "pull_request", "head", "ref"),
        head_repo=dig(p, "pull_request", "head", "repo", "full_name"),
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
            ctx.store,
            ctx.config,
            pull_request_key(dig(ctx.payload, "issue", "pull_request", "html_url")),
            repo=ctx.repo,
        )
    else:
        ref = _issue_task(ctx.store, service, ctx.repo, issue)
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
        document = comment_document(ctx, body)
        pull = number(dig(ctx.payload, "issue", "number"))
        if dig(ctx.payload, "issue", "pull_request") is not None and pull:
            # On our pull request: the follow-up sees the review comments, not only the command.
            document = with_review_comments(document, _pull_request_comments(ctx, pull))
        operations.add_context(ctx.store, *ref, document, actor=ctx.actor)
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
    """Changes requested or inline review comments on our pull request: run again with the review as context.

    GitHub sends one event for a review and one more for each of its inline comments,
    in no set order. The first of them claims the review and starts one run whose
    context is the whole review (read over REST: its text and every inline comment);
    the others of the same review start nothing.
    """
    ref = _pull_request_task(ctx)
    if ref is None:
        return _ignored(f"pull request {ctx.repo}#{dig(ctx.payload, 'pull_request', 'number')} is not one of ours")
    if dig(ctx.payload, "pull_request", "state") == "closed":
        return _ignored(f"pull request of task {ref[0]}/{ref[1]} is closed", ref)
    pull = number(dig(ctx.payload, "pull_request", "number")) or 0
    review, inline = review_of(ctx)
    review_id = review.get("id")
    if isinstance(review_id, int) and not isinstance(review_id, bool):
        claim = f"review:{ctx.repo.lower()}#{pull}:{review_id}"
        if not ctx.store.claim_event(claim, ctx.delivery_id, ctx.settings.delivery_ttl_seconds):
            return _ignored(f"review {review_id} already started a run of task {ref[0]}/{ref[1]}", ref)
        review, inline = _read_review(ctx, pull, review_id, review, inline)
    document = review_document(ctx, review=review, inline=inline)
    operations.add_context(ctx.store, *ref, document, actor=ctx.actor)
    return _changed(ctx, f"task {ref[0]}/{ref[1]} runs again with the review as new context", ref)


def _pull_request_comments(ctx: EventContext, pull: int) -> list[dict[str, Any]]:
    return _ask_github(
        ctx,
        lambda client: client.pull_request_comments(ctx.repo, pull),
        [],
        f"the review comments of {ctx.repo}#{pull}",
        "the command alone is the context",
    )


def _read_review(
    ctx: EventContext, pull: int, review_id: int, review: dict[str, Any], inline: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The review and all its inline comments as GitHub has them; what the payload carries when GitHub cannot say."""

    def read(client: GitHubClient) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        found = client.request("GET", f"/repos/{ctx.repo}/pulls/{int(pull)}/reviews/{int(review_id)}")
        comments = client.review_comments(ctx.repo, pull, review_id)
        return (dict(found) if isinstance(found, dict) else review), comments or inline

    what = f"review {review_id} of {ctx.repo}#{pull}"
    return _ask_github(ctx, read, (review, inline), what, "using the event's own text")


def _ask_github(ctx: EventContext, call: Callable[[GitHubClient], T], fallback: T, what: str, instead: str) -> T:
    """`call` on a GitHub client; `fallback` without a token or when GitHub fails (logged: `what`, `instead`)."""
    if not ctx.settings.github_token:
        return fallback
    client = GitHubClient.from_settings(ctx.settings, store=ctx.store)
    try:
        return call(client)
    except GitHubError as exc:
        log.warning("could not read %s (%s); %s", what, exc, instead)
        return fallback
    finally:
        client.close()


def close_pull_request(ctx: EventContext) -> Outcome:
    """Our pull request was closed: record the outcome, stop the task if needed, release the workspace."""
    ref = _pull_request_task(ctx)
    if ref is None:
        return _ignored(f"pull request {ctx.repo}#{dig(ctx.payload, 'pull_request', 'number')} is not one of ours")
    merged = dig(ctx.payload, "pull_request", "merged") is True
    outcome = "merged" if merged else "closed"
    delivery = "delivered" if merged else "declined"
    task = ctx.store.require_task(*ref)
    if task.status not in TERMINAL:
        try:
            operations.cancel_task(ctx.store, *ref, actor=ctx.actor, reason=f"pull request {outcome} on GitHub")
        except operations.OperationRefused:
            pass  # it ended meanwhile; the outcome below still holds
    ctx.store.update_task(
        *ref,
        pull_request_outcome=outcome,
        pull_request_url=bounded_text(dig(ctx.payload, "pull_request", "html_url"), 500),
    )
    try:
        dispatch.send(Step.CLEANUP_WORKSPACE, ref[0], ref[1])
    except dispatch.QueueUnavailable:
        log.warning("could not queue the workspace cleanup of %s/%s", *ref)
    return _changed(ctx, f"task {ref[0]}/{ref[1]} {delivery}: pull request {outcome}; workspace released", ref)


HANDLERS: dict[str, Callable[[EventContext], Outcome]] = {
    "create_task_from_issue": create_task_from_issue,
    "run_command": run_command,
    "follow_up_on_review": follow_up_on_review,
    "close_pull_request": close_pull_request,
}


def handle_event(
    store: TaskStore, settings: Settings, delivery_id: str, event: str, payload: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Route one queued delivery and act on it; returns what was done (for logs and tests).

    Without `payload`, the delivery's pending copy in the store is the payload:
    the receiver keeps the body there once, and queues only the delivery id.
    """
    result = _handle_event(store, settings, delivery_id, event, payload)
    metrics.webhook_delivery(event, result["status"])
    return result


def _handle_event(
    store: TaskStore, settings: Settings, delivery_id: str, event: str, payload: Mapping[str, Any] | None
) -> dict[str, Any]:
    if store.event_handled(delivery_id):
        return {"delivery": delivery_id, "status": "duplicate", "detail": "already handled"}
    if payload is None:
        pending = store.pending_event(delivery_id)
        if pending is None:
            log.warning(
                "github delivery %s (%s): its payload is no longer kept (expired); nothing done", delivery_id, event
            )
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
        try:
            outcome = HANDLERS[decision.handler](ctx)
        except LimitReached as exc:  # a full cap is an answer, not a failure to retry
            variable = next((v.env for v in VARIABLES if v.attr == exc.setting), exc.setting)
            outcome = Outcome("ignored", f"{exc} ({variable}={exc.limit})")
    store.mark_event_handled(delivery_id, settings.delivery_ttl_seconds)
    log.info("github delivery %s (%s): %s: %s", delivery_id, event, outcome.status, outcome.detail)
    result: dict[str, Any] = {
        "delivery": delivery_id,
        "status": outcome.status,
        "detail": outcome.detail,
        "handler": decision.handler,
    }
    if outcome.task:
        result["task"] = f"{outcome.task[0]}/{outcome.task[1]}"
    return result
