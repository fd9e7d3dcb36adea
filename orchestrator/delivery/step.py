"""The `deliver_run` step as plain code: after a run's agent succeeded, deliver its work, then finish it.

Order, for the current run of an active task whose agent succeeded and whose
task has a repository (coordination's `finish` sends this step instead of
recording the end itself):

1. take (or re-take) the service's workspace lease for the run;
2. commit what the agent left uncommitted on the task's branch (the task's
   title as subject, a `Co-authored-by` trailer for the agent, the identity
   of ORCHESTRATOR_COMMIT_IDENTITY);
3. with commits beyond the base: push the branch (skipped when the remote has
   that commit already), then open or update the task's pull request (or, for
   a local repository, nothing more);
4. record the branch, base, head commit, commit count, diffstat, pull request
   and outcome (`changes` or `no_changes`) on the run and send `finish_run`,
   which now records the task's end.

Every part may be repeated: a redelivered step commits nothing twice, pushes
nothing new and finds the pull request it opened. A transient failure (the
remote or GitHub unreachable, a push refused by a hook) is retried with
backoff up to ORCHESTRATOR_DELIVERY_RETRIES times; then, or at once for a
permanent failure, the run is recorded Failed ("delivery failed: ...") and
`finish_run` fails the task. Commits stay on the branch either way.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator import dispatch, effects
from orchestrator.coordination.outputs import read_outputs
from orchestrator.coordination.stages import stages_of
from orchestrator.delivery import branch as branches
from orchestrator.delivery import pulls
from orchestrator.delivery.local import git_for, is_local_url
from orchestrator.delivery.record import CHANGES, FAILED, NO_CHANGES
from orchestrator.github.client import GitHubClient, GitHubError
from orchestrator.github.reporter import github_origin
from orchestrator.github.routing import pull_request_key
from orchestrator.model import Run, RunPhase, Task
from orchestrator.settings import Settings
from orchestrator.states import ACTIVE
from orchestrator.steps import Step
from orchestrator.store import StoreError, TaskStore
from orchestrator.workspace import lease as leases
from orchestrator.workspace.git import GitError, scrub
from orchestrator.workspace.layout import PathEscape, service_layout
from orchestrator.workspace.prepare import branch_name

log = logging.getLogger("orchestrator.delivery")

STEP = "delivery"
BACKOFF_CAP = 300.0


@dataclass(frozen=True)
class DeliveryResult:
    """What the step should do: `action` is delivered, failed, retry or skipped."""

    action: str
    message: str = ""
    countdown: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def needs_delivery(task: Task | None, run: Run) -> bool:
    """True for a succeeded run of a task with a repository that was not delivered yet."""
    spec = task.spec if task else {}
    return bool(spec.get("repository")) and run.phase == RunPhase.SUCCEEDED and not run.outcome


def backoff(settings: Settings, retries: int) -> float:
    delay = min(BACKOFF_CAP, settings.delivery_backoff_seconds * (2**retries))
    return delay * random.uniform(0.8, 1.2)


def _send_finish(run_id: str) -> None:
    try:
        dispatch.send(Step.FINISH_RUN, run_id)
    except dispatch.QueueUnavailable:
        # The run's end is recorded (phase and outcome): the reconcile loop re-sends its finish.
        log.warning("could not queue finish_run for %s after delivery; the reconcile loop will", run_id)


def stages_left(settings: Settings, task: Task, stage: str) -> list[str]:
    names = [s.name for s in stages_of(settings, task)]
    return names[names.index(stage) + 1 :] if stage and stage in names else []


def deliver_run(
    store: TaskStore, settings: Settings, run_id: str, *, retries: int = 0, client: Any = None
) -> DeliveryResult:
    """Do the deliver step for `run_id`; `retries` is how often it was retried already."""
    run, task, _ = store.get_run_with_task(run_id)
    if run is None:
        return DeliveryResult("skipped", f"no run {run_id}")
    service, task_id = run.service, run.task_id
    if task is None or task.current_run != run_id or task.status not in ACTIVE:
        return DeliveryResult("skipped", "the run is no longer its task's current run")
    if run.phase != RunPhase.SUCCEEDED:
        _send_finish(run_id)  # finish records a failed run itself
        return DeliveryResult("skipped", f"the run is {run.phase}")
    if run.outcome:
        _send_finish(run_id)  # delivered before a crash (or a redelivery): finish it again, idempotently
        return DeliveryResult("delivered", f"already delivered ({run.outcome})")

    spec: dict[str, Any] = task.spec
    repository = spec.get("repository") or {}
    url = str(repository.get("url") or "")
    base = str(repository.get("branch") or "main")
    stage = run.stage
    try:
        lease = leases.acquire(store, service, run_id, settings.workspace_lease_seconds, task_id=task_id)
    except leases.LeaseBusy as busy:
        return _retry_or_fail(store, settings, run, retries, f"workspace busy: {busy}", transient=True)
    known: dict[str, Any] = {}  # what is known of the branch when a later part fails
    try:
        fields = _deliver(store, settings, run, task, url=url, base=base, stage=stage, client=client, known=known)
        leases.check(store, lease)
    except branches.DeliveryError as exc:
        return _retry_or_fail(store, settings, run, retries, str(exc), transient=exc.transient, known=known)
    except GitError as exc:
        return _retry_or_fail(store, settings, run, retries, str(exc), transient=exc.transient, known=known)
    except GitHubError as exc:
        if exc.rate_limited:
            return _wait_for_github(store, settings, run, exc)
        return _retry_or_fail(
            store, settings, run, retries, f"pull request: {exc}", transient=exc.transient, known=known
        )
    except leases.LeaseLost as exc:
        return _retry_or_fail(store, settings, run, retries, str(exc), transient=True, known=known)
    except (PathEscape, ValueError) as exc:
        return _retry_or_fail(store, settings, run, retries, str(exc), transient=False, known=known)
    except OSError as exc:
        return _retry_or_fail(store, settings, run, retries, f"workspace I/O error: {exc}", transient=True, known=known)

    fields["delivered_at"] = time.time()
    store.update_run(run_id, **fields)
    if fields.get("pull_request_url"):
        key = pull_request_key(fields["pull_request_url"])
        if key:
            store.link_pull_request(key, service, task_id)  # webhooks about it find the task at once
    _send_finish(run_id)
    what = f"{fields['commits']} commit(s) on {fields['branch']}" if fields["outcome"] == CHANGES else "no changes"
    log.info(
        "run %s delivered: %s%s",
        run_id,
        what,
        f", pull request {fields['pull_request_url']}" if fields.get("pull_request_url") else "",
    )
    return DeliveryResult("delivered", what, fields=fields)


def _deliver(
    store: TaskStore,
    settings: Settings,
    run: Run,
    task: Task,
    *,
    url: str,
    base: str,
    stage: str,
    client: Any,
    known: dict[str, Any],
) -> dict[str, Any]:
    """Commit, measure, push, open or update the pull request; the run fields to record."""
    service, task_id, run_id = run.service, run.task_id, run.run_id
    spec: dict[str, Any] = task.spec
    service_dir = service_layout(settings.workspace_root, service)
    layout = service_dir.checkout(task_id)  # the task's worktree of the service's clone
    if not (service_dir.clone / ".git").is_dir() or not layout.path.is_dir():
        raise branches.DeliveryError("the workspace holds no git checkout to deliver")
    service_dir.check(service_dir.clone / ".git", what=".git")
    layout.check(layout.path)
    # The branch preparation checked out (recorded on the run); the template's, for a run recorded before that.
    branch = run.branch or branch_name(settings, service, task_id)
    git = git_for(
        url,
        layout.path,
        token=settings.github_token,
        timeout=settings.git_timeout_seconds,
        secrets=tuple(settings.secret_values()),
        clone=service_dir.clone,
    )
    branches.prepare_checkout(git, branch, url)
    agent = str(run.agent or spec.get("agent_name") or task.agent or "agent")
    committed = branches.commit_leftovers(
        git,
        title=pulls.title_of(spec, task_id),
        agent=agent,
        identity=settings.commit_identity,
        task_ref=f"{service}/{task_id}",
    )
    state = branches.branch_state(git, branch=branch, base=base, committed=committed)
    fields = branches.as_fields(state)
    known.update(fields)
    outputs = dict(run.outputs)
    outputs.update(branch=state.branch, commit=state.commit)
    if not state.commits:
        fields.update(outcome=NO_CHANGES, outputs=outputs)
        return fields
    # Recorded as intent and completion: a redelivery after the push asks nothing; one interrupted
    # between the push and its record asks the remote whether the branch is at our commit.
    pushed = effects.once(
        store,
        effects.PUSH,
        f"{run_id}:{state.commit}",
        act=lambda: (branches.push(git, branch, state.commit), state.commit)[1],
        find=lambda: state.commit if branches.remote_head(git, branch) == state.commit else None,
        lease_seconds=_effect_lease(settings),
    )
    if pushed.result is None:
        raise branches.DeliveryError(f"another delivery of run {run_id} is pushing", transient=True)
    fields["outcome"] = CHANGES
    if is_local_url(url):
        fields["outputs"] = outputs
        return fields  # a local repository: the branch is pushed back to it; no pull request
    owner_repo = pulls.repository_of(url)
    if owner_repo is None or not settings.github_token:
        why = "no GITHUB_TOKEN" if owner_repo else "not a GitHub repository URL"
        log.info("run %s: branch %s pushed; no pull request (%s)", run_id, branch, why)
        fields["outputs"] = outputs
        return fields
    owner, repo = owner_repo
    agent_outputs = read_outputs(layout.path, service, task_id, run_id)
    left = stages_left(settings, task, stage)
    origin = github_origin(task)
    issue = None
    if origin and "issue" in (task.origin.get("github") or {}) and origin[0].lower() == f"{owner}/{repo}".lower():
        issue = origin[1]
    body = pulls.render_body(
        spec,
        service=service,
        task_id=task_id,
        agent_summary=str(agent_outputs.get("summary") or outputs.get("summary") or ""),
        closes=issue,
        run_id=run_id,
        stages_left=left,
    )
    github = client or GitHubClient.from_settings(settings, store=store)

    def open_pull() -> str:
        pull = pulls.open_or_update(
            github,
            owner=owner,
            repo=repo,
            branch=branch,
            base=base,
            title=pulls.title_of(spec, task_id),
            body=body,
            draft=settings.pull_request_draft and bool(left),
        )
        return f"{pull.number} {pull.url}"

    def find_pull() -> str | None:
        found = pulls.find_open(github, owner, repo, branch)
        return f"{int(found['number'])} {found.get('html_url') or ''}" if found else None

    # GitHub answers a second create with 422 at best: intent and completion around it, and an
    # interrupted one resolved by the open pull request of this head (GET ?head=).
    opened = effects.once(
        store, effects.PULL_REQUEST, run_id, act=open_pull, find=find_pull, lease_seconds=_effect_lease(settings)
    )
    if opened.result is None:
        raise branches.DeliveryError(f"another delivery of run {run_id} is opening its pull request", transient=True)
    number, _, pull_url = opened.result.partition(" ")
    outputs["pull_request_url"] = pull_url
    fields.update(pull_request_url=pull_url, pull_request_number=int(number), outputs=outputs)
    return fields


def _effect_lease(settings: Settings) -> float:
    """How long a push's or pull request's intent stays live unrenewed: a dead holder's lapses this soon."""
    return max(settings.stuck_after_seconds, 5.0)


def _wait_for_github(store: TaskStore, settings: Settings, run: Run, exc: GitHubError) -> DeliveryResult:
    """GitHub's rate limit (or the shared write budget) said "later": retry then, without counting a failure.

    The pull request is not given up for it: the commits are pushed already, and
    the write goes out once GitHub lets it.
    """
    wait = max(exc.retry_after or 0.0, 1.0)
    countdown = min(wait, max(settings.stuck_after_seconds / 2, 1.0))
    store.update_run(run.run_id, delivery_error=scrub(f"pull request: {exc}", settings.secret_values())[:1500])
    try:
        store.update_task(run.service, run.task_id)  # touched: a step waiting on GitHub is not a lost one
    except StoreError:
        pass
    log.info("run %s: GitHub asked to wait (%s); the pull request is retried in %.0fs", run.run_id, exc, countdown)
    return DeliveryResult("retry", f"pull request: {exc}", countdown=countdown)


def _retry_or_fail(
    store: TaskStore,
    settings: Settings,
    run: Run,
    retries: int,
    message: str,
    *,
    transient: bool,
    known: Mapping[str, Any] | None = None,
) -> DeliveryResult:
    message = scrub(message, settings.secret_values())[:1500]
    run_id = run.run_id
    # Counted on the run too: a message sent again (the re-drive, a redelivery) does not restart the count.
    retries = max(retries, run.delivery_failures)
    if transient and retries < settings.delivery_retries:
        # Never longer than the re-drive's patience, and the task is touched: a step waiting to retry is
        # not taken for a lost one (which would send a second deliver_run).
        countdown = min(backoff(settings, retries), settings.stuck_after_seconds / 2)
        store.update_run(run_id, delivery_failures=retries + 1, delivery_error=message)
        try:
            store.update_task(run.service, run.task_id)
        except StoreError:
            pass
        log.info(
            "run %s: delivery failed (%s); retry %d of %d in %.0fs",
            run_id,
            message,
            retries + 1,
            settings.delivery_retries,
            countdown,
        )
        return DeliveryResult("retry", message, countdown=countdown)
    reason = f"delivery failed: {message}"
    gave_up = f" (after {retries} retries)" if retries else ""
    # Recorded as the run's end: finish_run fails the task with this reason (never retried as a platform fault).
    # The branch as delivery left it (its commits stay there), with the failure.
    store.update_run(
        run_id,
        **dict(known or {}),
        phase=RunPhase.FAILED,
        failure_reason=reason + gave_up,
        retryable="0",
        outcome=FAILED,
        delivered_at=time.time(),
    )
    log.warning("run %s: %s%s", run_id, reason, gave_up)
    _send_finish(run_id)
    return DeliveryResult("failed", reason + gave_up)
