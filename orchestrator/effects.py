"""Every side effect exactly once: an intent recorded before acting, a completion after it.

A step that causes an effect outside (creates a Job, starts a local agent,
pushes a branch, opens a pull request, posts a comment, creates a task from a
webhook) calls `once` with two functions: `act`, which causes it, and `find`,
which asks the outside world whether it exists already (the Job with our
labels, the remote branch at our sha, the pull request of our head, our
comment by its marker). The record lives in the store
(`orchestrator.store.effects`):

- completion recorded: the effect happened; a redelivered or re-driven step
  does nothing and reads what it produced;
- another holder's intent still live: a delivery of the same step is acting
  right now; this one does nothing (its holder renews the intent while it
  acts, so a slow effect is never taken for a dead one);
- an intent that lapsed without a completion: its holder died between acting
  and recording (kill -9, a lost node); `find` decides, and `act` runs only
  when the outside world has nothing;
- no record: act.

The three points of `once` where a process may die (before the effect,
between the effect and its record, after the record) are the named no-op
functions `before_effect`, `after_effect` and `after_record`, which the fault
tests (tests/support/step_hooks.py) pause in to kill a worker there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.store import StoreError, TaskStore

log = logging.getLogger("orchestrator.effects")

# The kinds of effects, as their records are named in the store.
JOB = "job"  # a Kubernetes Job created (subject: run id)
LOCAL_AGENT = "local-agent"  # a local agent supervisor started (subject: run id)
PUSH = "push"  # the task branch pushed (subject: run id)
PULL_REQUEST = "pull-request"  # the task's pull request opened (subject: run id)
COMMENT = "comment"  # the task's status comment created (subject: service/task id)
WEBHOOK_TASK = "webhook-task"  # a task created from a webhook (subject: its idempotency key)

# How long an intent stays live without being renewed; its holder renews it every third of that.
DEFAULT_LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class Done:
    """What `once` did: `how` is acted, found (the outside world had it), recorded (done before) or busy."""

    how: str
    result: str | None

    @property
    def acted(self) -> bool:
        return self.how == "acted"


def holder_id() -> str:
    """Who acts: this host and process, and this call (two threads of one process are two holders)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# Where a process may die; no-ops that the fault tests wrap to pause (and be killed) there.
def before_effect(kind: str, subject: str) -> None:
    """The intent is recorded; the effect was not caused yet."""


def after_effect(kind: str, subject: str) -> None:
    """The effect was caused; its completion is not recorded yet."""


def after_record(kind: str, subject: str) -> None:
    """The completion is recorded; the step has not acted on it yet."""


def once(
    store: TaskStore,
    kind: str,
    subject: str,
    *,
    act: Callable[[], str],
    find: Callable[[], str | None] | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> Done:
    """Cause the effect `kind` of `subject` unless it was caused already (see the module's docstring).

    `act` causes it and returns what it produced (a name, a sha, a URL);
    `find` returns that for an effect that exists outside already, else None.
    An exception from `act` or `find` lapses the intent (the effect may or may
    not have happened, so the next try asks `find`) and propagates.
    """
    holder = holder_id()
    claim = store.begin_effect(kind, subject, holder, lease_seconds)
    if claim.state == "done":
        return Done("recorded", claim.result)
    if claim.state == "busy":
        log.info("%s of %s: another delivery (%s) is acting; nothing done", kind, subject, claim.holder)
        return Done("busy", None)
    stop = threading.Event()
    keeper = threading.Thread(
        target=_keep,
        args=(store, kind, subject, holder, lease_seconds, stop),
        name=f"intent {kind} {subject}",
        daemon=True,
    )
    keeper.start()
    try:
        result = find() if claim.state == "stale" and find is not None else None
        how = "found" if result is not None else "acted"
        if result is None:
            before_effect(kind, subject)
            result = act()
            after_effect(kind, subject)
    except BaseException:
        stop.set()
        keeper.join()
        try:
            store.renew_effect(kind, subject, holder, 0)
        except StoreError:
            pass  # it lapses by itself
        raise
    stop.set()
    keeper.join()
    if not store.complete_effect(kind, subject, holder, str(result), how):
        # Recorded complete meanwhile (our intent lapsed and another delivery found ours): theirs stands.
        recorded = store.effect(kind, subject).get("result")
        result = recorded or result
    if how == "found":
        log.info("%s of %s: found it done outside after an interrupted attempt (%s)", kind, subject, result)
    after_record(kind, subject)
    return Done(how, str(result))


def _keep(store: TaskStore, kind: str, subject: str, holder: str, lease_seconds: float, stop: threading.Event) -> None:
    while not stop.wait(lease_seconds / 3):
        try:
            if not store.renew_effect(kind, subject, holder, lease_seconds):
                return
        except StoreError:
            pass  # Redis away for a moment: try again at the next beat
