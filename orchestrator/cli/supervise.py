"""Restarting the processes of `orchestrator up` when they exit, with backoff, instead of stopping the stack.

Celery on Redis may die when the broker goes away and comes back (kombu's
`restore_unacked` on a closed connection, celery #8030, #8384, #10205), and a
watcher may exit on an error nobody foresaw. Work is never lost with them (the
store keeps every task and the watcher re-drives it), so the right answer is the
one Kubernetes gives a pod: start the process again, waiting longer after each
quick death so a process that cannot start does not spin, and forgetting its
deaths once it has stayed up a while.

A child is anything with `poll()` (None while it runs, its exit code after) and
`restart()`; a worker may also name a heartbeat file (workers/heartbeat.py):
when the file is older than allowed the worker is alive but no longer
consuming, and it is stopped so that it is started again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator import heartbeat
from orchestrator.backoff import delay
from orchestrator.cli.processes import Stack, signal_group, tail

log = logging.getLogger("orchestrator.up")


class Child(Protocol):
    def poll(self) -> int | None:
        """None while the process runs; its exit code once it has ended."""

    def restart(self) -> None:
        """Start the process again (the previous one has ended)."""


@dataclass
class _State:
    started_at: float
    failures: int = 0  # quick deaths in a row: the backoff's attempt
    exited_at: float | None = None
    due_at: float | None = None  # when to start it again


@dataclass(frozen=True)
class Event:
    """What the supervisor did, for the terminal and the log."""

    name: str
    what: str  # "exited" (code, next start in `wait` s), "restarted", "restart failed", "stalled"
    code: int | None = None
    wait: float = 0.0
    detail: str = ""


class Supervisor:
    """Checks its children; a child that exited is started again after a backoff."""

    def __init__(
        self,
        children: Mapping[str, Child],
        *,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        healthy_after: float = 60.0,
        stalled: Mapping[str, Callable[[float], str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = dict(children)
        self.base_delay, self.max_delay, self.healthy_after = base_delay, max_delay, healthy_after
        # name -> a check, given the child's uptime, that returns why the live child is stuck ("" when fine)
        self.stalled = dict(stalled or {})
        self.clock = clock
        now = clock()
        self.states = {name: _State(started_at=now) for name in self.children}
        self.restarts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> list[Event]:
        """One pass over the children: note the ones that exited, start again the ones whose wait is over."""
        events: list[Event] = []
        now = self.clock()
        for name, child in self.children.items():
            state = self.states[name]
            if state.due_at is None:
                code = child.poll()
                if code is None:
                    why = self.stalled[name](now - state.started_at) if name in self.stalled else ""
                    if why:
                        events.append(Event(name, "stalled", detail=why))
                        _stop(child)
                    continue
                # A process that ran long enough was healthy: its death starts the backoff anew.
                if now - state.started_at >= self.healthy_after:
                    state.failures = 0
                wait = delay(state.failures, base=self.base_delay, cap=self.max_delay)
                state.failures += 1
                state.exited_at, state.due_at = now, now + wait
                events.append(Event(name, "exited", code=code, wait=wait))
            if state.due_at is not None and now >= state.due_at:
                try:
                    child.restart()
                except Exception as exc:  # noqa: BLE001 - a start that failed is retried like a death
                    wait = delay(state.failures, base=self.base_delay, cap=self.max_delay)
                    state.failures += 1
                    state.due_at = now + wait
                    events.append(Event(name, "restart failed", wait=wait, detail=str(exc)))
                    continue
                state.started_at, state.due_at = self.clock(), None
                self.restarts[name] += 1
                events.append(Event(name, "restarted"))
        return events

    # In a thread (tests, the benchmark); `up` calls check() from its own loop --------------

    def start_thread(self, interval: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                for event in self.check():
                    log.warning("supervisor: %s %s %s", event.name, event.what, event.detail or event.code or "")

        self._thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._thread.start()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _stop(child: Child) -> None:
    """Stop a live child that is stuck; the next pass sees it ended and starts it again."""
    kill = getattr(child, "kill", None)
    if kill is not None:
        kill()


# `orchestrator up`'s children --------------------------------------------------------------


class StackChild:
    """One child of `up`'s Stack as the supervisor sees it."""

    def __init__(self, stack: Stack, name: str, before_start: Callable[[], object] | None = None):
        self.stack, self.name, self.before_start = stack, name, before_start

    def poll(self) -> int | None:
        proc = self.stack.process(self.name)
        return None if proc is None else proc.poll()

    def restart(self) -> None:
        if self.before_start is not None:
            self.before_start()
        self.stack.restart(self.name)

    def kill(self) -> None:
        proc = self.stack.process(self.name)
        if proc is not None:
            signal_group(proc.pid, signal.SIGKILL)


def supervise_stack(stack: Stack, worker_heartbeat: Path | None = None) -> Supervisor:
    """A supervisor of every child of `up`; the worker is also restarted when its heartbeat says it is stuck."""
    forget = (lambda: worker_heartbeat.unlink(missing_ok=True)) if worker_heartbeat else None
    children = {name: StackChild(stack, name, forget if name == "worker" else None) for name, _, _ in stack.children}
    stalled: dict[str, Callable[[float], str]] = {}
    if worker_heartbeat is not None and "worker" in children:
        path = worker_heartbeat
        stalled["worker"] = lambda uptime: heartbeat.verdict(path, heartbeat.DEFAULT_MAX_AGE, uptime=uptime)
    return Supervisor(children, stalled=stalled)


def describe(event: Event, stack: Stack) -> str:
    """One line (and, for a death, the last lines of its log) for the terminal."""
    log_path = stack.log_dir / f"{event.name}.log"
    if event.what == "exited":
        return (
            f"{event.name} exited with code {event.code}; starting it again in {event.wait:.1f} s. "
            f"Last lines of {log_path}:\n{tail(log_path)}"
        )
    if event.what == "stalled":
        return f"{event.name} is stuck ({event.detail}); stopping it to start it again"
    if event.what == "restart failed":
        return f"{event.name} could not be started again ({event.detail}); next try in {event.wait:.1f} s"
    return f"{event.name} started again"
