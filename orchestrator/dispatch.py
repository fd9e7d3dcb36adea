"""Sending pipeline steps: what the core asks of the worker layer, without importing it.

The core sends a step through a `Dispatcher`; the Celery-backed one lives in
workers/dispatcher.py and is built by the composition roots:

- the API: `api.wsgi` builds it and passes it to `create_app(dispatcher=...)`;
- the workers: the steps in workers/steps.py run in the process that built it;
- tests install a recording one (`install`).

Code deep in coordination reaches the process's dispatcher through
`current()` (or the `send` shortcut) instead of receiving it through every
function. When nothing was installed (the watcher started by the command
line), `current()` builds the default one named by `DEFAULT` (as `celery -A
workers.app` names the app): by name, never by import, so the core keeps no
dependency on the worker layer.

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

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.steps import Step
from orchestrator.store import StoreUnavailable, TaskStore

# The default dispatcher's factory, "module:callable", called with no argument.
DEFAULT = "workers.dispatcher:default"

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

    def send(self, step: Step | str, *args: Any, write: Write | None = None, countdown: float | None = None,
             argsrepr: str | None = None) -> Any:
        """Queue `step(*args)`, with `write` atomically when the broker is the store's Redis, else after it.

        Returns what `write.apply` returned (None without a write). Raises
        QueueUnavailable when the broker does not take the message (after a
        write that happened: the store says what should happen, the re-drive
        repeats it). `argsrepr` replaces the arguments as Flower shows them.
        """


_installed: Dispatcher | None = None
_lock = threading.Lock()


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
                module, _, name = DEFAULT.partition(":")
                _installed = getattr(importlib.import_module(module), name)()
            dispatcher = _installed
    return dispatcher


def send(step: Step | str, *args: Any, write: Write | None = None, countdown: float | None = None,
         argsrepr: str | None = None) -> Any:
    """`current().send(...)`: for plain code that was not handed a dispatcher."""
    return current().send(step, *args, write=write, countdown=countdown, argsrepr=argsrepr)
