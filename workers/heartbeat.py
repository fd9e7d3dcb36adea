"""The consumer heartbeat (orchestrator/heartbeat.py), written by a Celery consumer bootstep.

`celery -A workers.app worker ... --heartbeat-file PATH` turns it on (the chart
and `orchestrator up` do). The step starts with the consumer once its broker
connection and task consumer are up, and stops when the consumer does (a lost
connection restarts the consumer's steps): its timer runs in the consumer's
own event loop, so beats stop with the loop. Each beat also looks at the
queues this worker consumes from: work waiting there while the worker has a
free slot and receives nothing is a consumer that does not drain.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import click
from celery import Celery, bootsteps, signals
from celery.worker import state

from orchestrator import heartbeat
from orchestrator.store import StoreError

log = logging.getLogger("orchestrator.worker")

# What each beat compares: when this process last received a message from the broker.
_consumption = heartbeat.Consumption()


def _on_received(**_kwargs: Any) -> None:
    _consumption.received(time.monotonic())


class ConsumerHeartbeat(bootsteps.StartStopStep):
    """Rewrites the heartbeat file every few seconds while the consumer runs."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(
        self, c: Any, heartbeat_file: str | None = None, heartbeat_seconds: float | None = None, **kwargs: Any
    ) -> None:
        self.path = Path(heartbeat_file) if heartbeat_file else None
        self.enabled = self.path is not None
        self.every = float(heartbeat_seconds or heartbeat.BEAT_SECONDS)
        self.tref: Any = None
        # The queues it was started to serve: a queue whose consumer was cancelled still counts.
        self.queues: set[str] = set()
        if self.path is not None:
            # A previous process's heartbeat (a restarted container keeps its volumes) says nothing of this one.
            self.path.unlink(missing_ok=True)
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self.beat(c)  # at once: a restarted consumer is alive again now, not in BEAT_SECONDS
        self.tref = c.timer.call_repeatedly(self.every, self.beat, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def beat(self, c: Any) -> None:
        assert self.path is not None
        self.queues.update(queue.name for queue in getattr(c.task_consumer, "queues", None) or ())
        waiting, detail = _waiting(sorted(self.queues))
        free = _concurrency(c) - len(state.reserved_requests)
        stalled = _consumption.observe(time.monotonic(), waiting=waiting, free_slots=free)
        if stalled >= self.every * 3:
            log.warning(
                "consumer heartbeat: %d messages wait in its queues for %.0f s and none was received", waiting, stalled
            )
        try:
            heartbeat.write(self.path, stalled_for=stalled, detail=detail)
        except OSError as exc:
            log.warning("consumer heartbeat: cannot write %s: %s", self.path, exc)


def _waiting(names: list[str]) -> tuple[int, str]:
    """Messages waiting in these queues (0 when the store cannot tell: a stall is not inferred then)."""
    from orchestrator.runtime import get_store

    try:
        return sum(get_store().queue_depths(names).values()), ""
    except StoreError as exc:
        return 0, f"queue depths unknown: {exc}"


def _concurrency(c: Any) -> int:
    return int(getattr(c.controller, "concurrency", None) or getattr(c.pool, "num_processes", None) or 1)


def install(app: Celery) -> None:
    """Add the `--heartbeat-file` option to `celery worker` and the step that writes it."""
    app.user_options["worker"].add(
        click.Option(
            ["--heartbeat-file"],
            default=None,
            help="Rewrite this file while the consumer consumes (read by `orchestrator worker-alive`).",
        )
    )
    app.user_options["worker"].add(
        click.Option(
            ["--heartbeat-seconds"],
            type=float,
            default=heartbeat.BEAT_SECONDS,
            help="Seconds between two heartbeats.",
        )
    )
    app.steps["consumer"].add(ConsumerHeartbeat)
    signals.task_received.connect(_on_received, weak=False)
