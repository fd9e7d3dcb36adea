"""Sending pipeline steps: what the core asks of the worker layer, without importing it.

The core sends a step through a `Dispatcher`; the Celery-backed one
(orchestrator/celery_dispatch.py) is handed a Celery app and built by each
process's composition root, so nothing in orchestrator/ or api/ imports the
worker layer:

- the API: `api.wsgi` builds it over a Celery app configured like the
  workers' (orchestrator/celery_app.py) and passes it to `create_app`;
- the workers: workers/app.py registers one over its own app as the default;
- the watcher: its command installs one;
- tests install a recording one (`install`).

Code deep in coordination reaches the process's dispatcher through
`current()` (or the `send` shortcut) instead of receiving it through every
function.

One method, `send(step, *args, write=..., countdown=...)`, makes the one choice
every sender used to repeat: when the broker is the store's own Redis, the
step's message is pushed by the store write itself (the same Lua script:
written and queued, or neither); otherwise the write happens first and the
step is sent after it. No retry here: a caller that stored something before
sending either answers 503 (nothing claimed) or leaves a stored record that
the reconcile loop re-drives, so a hidden wait in the request path would only
slow the answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.steps import Step
from orchestrator.store import StoreUnavailable, TaskStore

# What a store write with a message takes as `enqueue=`: (queue, broker message), or None.
Enqueue = tuple[str, bytes]


class QueueUnavailable(StoreUnavailable):
    """The broker did not take the message."""


@dataclass(frozen=True)
class Write:
    """A store write a step goes with: `apply(enqueue)` writes, pushing `enqueue` in the same script when given.

    `apply` passes `enqueue` on as the `enqueue=` argument of a store method
    that takes one (create_task, claim_delivery, transition). It returns what
    the store method returns; a false value (a duplicate delivery) means
    nothing was written, and then nothing is sent. A refused write raises, and
    nothing is sent either.
    """

    store: TaskStore
    apply: Callable[[Enqueue | None], Any]


class Dispatcher(Protocol):
    """Queues steps for the workers."""

    def send(
        self,
        step: Step | str,
        *args: Any,
        write: Write | None = None,
        countdown: float | None = None,
        argsrepr: str | None = None,
    ) -> Any:
        """Queue `step(*args)`, with `write` atomically when the broker is the store's Redis, else after it.

        Returns what `write.apply` returned (None without a write). Raises
        QueueUnavailable when the broker does not take the message (after a
        write that happened: the store says what should happen, the re-drive
        repeats it). `argsrepr` replaces the arguments as Flower shows them.
        """


_installed: Dispatcher | None = None
# What builds the dispatcher when none was installed: registered by the process's
# composition root (workers/app.py: a dispatcher over the workers' own Celery app).
_default: Callable[[], Dispatcher] | None = None
_lock = threading.Lock()


class NoDispatcher(RuntimeError):
    """Nothing installed a dispatcher in this process: its entry point must (see the module's docstring)."""


def set_default(factory: Callable[[], Dispatcher] | None) -> Callable[[], Dispatcher] | None:
    """Register what builds the dispatcher on first use when none is installed; returns the one it replaces."""
    global _default
    with _lock:
        previous, _default = _default, factory
    return previous


def install(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """Make `dispatcher` this process's (None: back to the default); returns the one it replaces."""
    global _installed
    with _lock:
        previous, _installed = _installed, dispatcher
    return previous


def current() -> Dispatcher:
    """This process's dispatcher: the installed one, else the default (built on first use)."""
    global _installed
    dispatcher = _installed
    if dispatcher is None:
        with _lock:
            if _installed is None:
                if _default is None:
                    raise NoDispatcher("no dispatcher in this process: its entry point installs one")
                _installed = _default()
            dispatcher = _installed
    return dispatcher


def send(
    step: Step | str,
    *args: Any,
    write: Write | None = None,
    countdown: float | None = None,
    argsrepr: str | None = None,
) -> Any:
    """`current().send(...)`: for plain code that was not handed a dispatcher."""
    return current().send(step, *args, write=write, countdown=countdown, argsrepr=argsrepr)
