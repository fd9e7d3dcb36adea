"""The Celery-backed `Dispatcher` (orchestrator.dispatch): steps queued the way `send_task` queues them.

It is handed the Celery app whose routes and message format it follows; it
never imports the worker layer.

A step message is built by Celery itself (`app.amqp.as_task_v2`: the same
headers, ids and ETA a `send_task` would write) and pushed onto the queue's
Redis list in one LPUSH, wrapped the way kombu's Redis transport wraps it
(orchestrator.store.broker). Celery builds each step's message once per
process; later messages of that step copy it and change only what differs per
message (ids and arguments), because building it anew showed in every API
request's time. That skips what `send_task` adds around the same LPUSH on
every call (producer pool, a new redis client object per publish, the publish
retry loop); bench/api_submit.py sets the two side by side. A broker that is not plain Redis goes through `send_task`
as before.

When the broker is the very Redis (server and database) of the store a write
goes to, the message is pushed by the write's own script: stored and queued,
or neither. That choice is made here, once, for every sender.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from celery import Celery
from celery.utils.saferepr import saferepr
from kombu.exceptions import OperationalError
from kombu.utils.json import dumps

from orchestrator import tracing
from orchestrator.celery_app import create_celery
from orchestrator.dispatch import Enqueue, QueueUnavailable, Write
from orchestrator.steps import Step
from orchestrator.store import RedisTarget, StoreUnavailable, TaskStore
from orchestrator.store.broker import message as kombu_message
from orchestrator.store.broker import new_id
from orchestrator.store.connection import identity_of

_REPLY_TO = str(uuid.uuid4())  # unused (results are ignored) but present, as send_task writes it


class CeleryDispatcher:
    """Queues steps with the routes and message format of one Celery app."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.url = str(app.conf.broker_url or "")
        options = app.conf.broker_transport_options or {}
        # A Redis (named by its URL or by Sentinels) whose queue lists carry their
        # plain names: we may push ourselves.
        self.target = RedisTarget.from_broker(self.url, options)
        self.plain_redis = self.url.startswith(("redis://", "rediss://", "sentinel://")) and not options.get(
            "global_keyprefix"
        )
        self._queues: dict[str, str] = {}
        # (step, pid) -> (headers, properties, the JSON of the body's embed part) of Celery's message.
        self._templates: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any], str]] = {}
        self._bound: dict[int, bool] = {}
        self._brokers: dict[int, TaskStore] = {}
        self._lock = threading.Lock()

    # The one method --------------------------------------------------------------

    def send(
        self,
        step: Step | str,
        *args: Any,
        write: Write | None = None,
        countdown: float | None = None,
        argsrepr: str | None = None,
    ) -> Any:
        """Queue `step(*args)`; with `write`, in its script when the broker is its store's Redis, else after it."""
        if write is not None and self.bound_to(write.store):
            return write.apply(self.message(step, list(args), countdown=countdown, argsrepr=argsrepr))
        written = write.apply(None) if write is not None else None
        if write is not None and not written:
            return written  # nothing written (a duplicate): nothing to send
        self._publish(step, list(args), countdown=countdown, argsrepr=argsrepr)
        return written

    # Publishing ------------------------------------------------------------------

    def _publish(self, step: str, args: list[Any], *, countdown: float | None, argsrepr: str | None) -> None:
        if not self.plain_redis:
            traceparent = tracing.current_traceparent()
            headers = {"traceparent": traceparent} if traceparent else None
            try:
                self.app.send_task(
                    str(step), args=args, countdown=countdown, argsrepr=argsrepr, retry=False, headers=headers
                )
            except OperationalError as exc:
                raise QueueUnavailable("the queue does not answer") from exc
            return
        queue, body = self.message(step, args, countdown=countdown, argsrepr=argsrepr)
        try:
            self._broker().enqueue(queue, body)
        except StoreUnavailable as exc:
            raise QueueUnavailable("the queue (Redis) does not answer") from exc

    def _broker(self) -> TaskStore:
        """One long-lived client per process (a forked child builds its own)."""
        pid = os.getpid()
        client = self._brokers.get(pid)
        if client is None:
            with self._lock:
                client = self._brokers.get(pid)
                if client is None:
                    client = self._brokers[pid] = TaskStore(self.target.client(timeout=2.0))
        return client

    def bound_to(self, store: TaskStore) -> bool:
        """True when steps are queued on the very Redis (server and database) that holds `store`."""
        if not self.plain_redis:
            return False
        pool = store.redis.connection_pool
        known = self._bound.get(id(pool))
        if known is None:
            known = self._bound[id(pool)] = identity_of(store.redis) == self.target.identity()
        return known

    # The message -------------------------------------------------------------------

    def message(
        self, step: str, args: list[Any], *, countdown: float | None = None, argsrepr: str | None = None
    ) -> Enqueue:
        """(queue, broker message) for one step: Celery's protocol 2 in kombu's Redis envelope."""
        queue = self.queue_of(step)
        task_id = new_id()
        parent = self.app.current_worker_task  # a step sending the next one: keep Flower's chain
        root_id = parent_id = None
        if parent is not None and parent.request.id:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        if countdown is None:
            headers, properties, embed = self._from_template(str(step), task_id, args, argsrepr, root_id, parent_id)
        else:  # an ETA: rare (retries), so Celery builds the whole message
            task = self.app.amqp.as_task_v2(
                task_id,
                str(step),
                args=args,
                kwargs={},
                countdown=countdown,
                argsrepr=argsrepr,
                root_id=root_id,
                parent_id=parent_id,
                ignore_result=None,
            )
            headers, properties, embed = task.headers, dict(task.properties), dumps(task.body[2])
        # Tracing on: the step's span is a child of the sender's (a webhook's request, the step before). A step
        # of a task joins the task's own trace instead (orchestrator.tracing); this covers the others.
        traceparent = tracing.current_traceparent()
        if traceparent:
            headers["traceparent"] = traceparent
        return queue, kombu_message(queue, headers, properties, args, embed, reply_to=_REPLY_TO)

    def queue_of(self, step: str) -> str:
        """The queue a step is routed to (routes go by step name alone, so it is looked up once)."""
        queue = self._queues.get(step)
        if queue is None:
            queue = self._queues[step] = self.app.amqp.router.route({}, str(step), [], {})["queue"].name
        return queue

    def _from_template(
        self, step: str, task_id: str, args: list[Any], argsrepr: str | None, root_id: str | None, parent_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(headers, properties, embed JSON) of a message without ETA, from Celery's message for this step."""
        key = (step, os.getpid())  # the headers name the sending process
        template = self._templates.get(key)
        if template is None:
            built = self.app.amqp.as_task_v2("template", step, args=[], kwargs={}, ignore_result=None)
            template = self._templates[key] = (built.headers, built.properties, dumps(built.body[2]))
        if argsrepr is None:
            argsrepr = repr(args)
            if len(argsrepr) > self.app.amqp.argsrepr_maxsize:  # Celery shortens a long one
                argsrepr = saferepr(args, self.app.amqp.argsrepr_maxsize)
        headers = dict(
            template[0], id=task_id, root_id=root_id or task_id, parent_id=parent_id, argsrepr=argsrepr, stamps={}
        )
        return headers, dict(template[1], correlation_id=task_id), template[2]


def default() -> CeleryDispatcher:
    """A dispatcher over a Celery app built from the settings (the same routes as the workers' app)."""
    return CeleryDispatcher(create_celery())
