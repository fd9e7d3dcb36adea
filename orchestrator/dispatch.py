"""Sending pipeline steps to their queues by name (the sender needs no step code).

A step message is built by Celery itself (`app.amqp.as_task_v2`: the same
headers, ids and ETA a `send_task` would write) and pushed onto the queue's
Redis list in one LPUSH, wrapped the way kombu's Redis transport wraps it.
Celery builds each step's message once per process; later messages of that
step copy it and change only what differs per message (ids and arguments),
because building it anew was a tenth of an API request's time.
That skips what `send_task` adds around the same LPUSH on every call (producer
pool, a new redis client object per publish, the publish retry loop), which
was most of the cost of an API request (see bench/RESULTS.md). A broker that
is not plain Redis goes through `send_task` as before.

No retry here: a caller that stored something before sending either answers
503 (nothing claimed) or leaves a stored record that the reconcile loop
re-drives, so a hidden wait in the request path would only slow the answer.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from celery.utils.saferepr import saferepr
from kombu.exceptions import OperationalError
from kombu.utils.json import dumps
from redis.connection import parse_url

from orchestrator.store import StoreUnavailable, TaskStore, connect

# Step names: the interface between who asks for work and who does it.
ADMIT = "orchestrator.admit"
PREPARE_WORKSPACE = "orchestrator.prepare_workspace"
LAUNCH_RUN = "orchestrator.launch_run"
FINISH_RUN = "orchestrator.finish_run"
CANCEL_RUN = "orchestrator.cancel_run"
HANDLE_EVENT = "orchestrator.handle_event"
CLEANUP_WORKSPACE = "orchestrator.cleanup_workspace"
REPORT_STATUS = "orchestrator.report_status"
DELIVER_RUN = "orchestrator.deliver_run"

# How a message is persisted and encoded by kombu's Redis transport.
_PERSISTENT = 2
_REPLY_TO = str(uuid.uuid4())  # unused (results are ignored) but present, as send_task writes it

_clients: dict[tuple[str, int], TaskStore] = {}
_bound: dict[tuple[str, int], bool] = {}
_clients_lock = threading.Lock()


class QueueUnavailable(StoreUnavailable):
    """The broker did not take the message."""


def _broker(url: str) -> TaskStore:
    """One long-lived client per broker URL and process (a forked child builds its own)."""
    key = (url, os.getpid())
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = TaskStore(connect(url, timeout=2.0))
    return client


_plain: dict[tuple[int, str], bool] = {}


def _plain_redis(app: Any, url: str | None = None) -> bool:
    """True when the broker (`url`, read from `app` when not given) is a Redis whose queue lists carry their plain names."""
    url = str(app.conf.broker_url or "") if url is None else url
    key = (id(app), url)
    plain = _plain.get(key)
    if plain is None:  # reading Celery's configuration is slow enough to show in a request's time
        options = app.conf.broker_transport_options or {}
        plain = _plain[key] = url.startswith(("redis://", "rediss://")) and not options.get("global_keyprefix")
    return plain


@dataclass(frozen=True)
class Outgoing:
    """One step message ready to push: the queue and the broker message."""

    queue: str
    body: bytes

    def enqueue(self) -> tuple[str, bytes]:
        """The `enqueue=` argument of the store methods that write and queue in one step."""
        return self.queue, self.body


def message(app: Any, step: str, args: list[Any], *, countdown: float | None = None,
            argsrepr: str | None = None) -> tuple[str, bytes]:
    """(queue, broker message) for one step: Celery's protocol 2 in kombu's Redis envelope."""
    queue = _queue_of(app, step)
    task_id = _uuid4()
    parent = app.current_worker_task  # a step sending the next one: keep Flower's chain
    root_id = parent_id = None
    if parent is not None and parent.request.id:
        root_id = parent.request.root_id or parent.request.id
        parent_id = parent.request.id
    if countdown is None:
        headers, properties, embed = _from_template(app, step, task_id, args, argsrepr, root_id, parent_id)
    else:  # an ETA: rare (retries), so Celery builds the whole message
        task = app.amqp.as_task_v2(task_id, step, args=args, kwargs={}, countdown=countdown, argsrepr=argsrepr,
                                   root_id=root_id, parent_id=parent_id, ignore_result=None)
        headers, properties, embed = task.headers, dict(task.properties), dumps(task.body[2])
    properties.update(reply_to=_REPLY_TO, delivery_mode=_PERSISTENT,
                      delivery_info={"exchange": "", "routing_key": queue}, priority=0,
                      body_encoding="base64", delivery_tag=_uuid4())
    envelope = {
        "body": base64.b64encode(f"[{_dumps_args(args)},{{}},{embed}]".encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    # orjson: the envelope holds only strings, numbers, None and containers of them.
    return queue, orjson.dumps(envelope)


def _uuid4() -> str:
    """A random (version 4) UUID's text, as str(uuid.uuid4()) writes it, in a third of its time."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_SCALARS = (str, int, float, bool, type(None))


def _dumps_args(args: list[Any]) -> str:
    """The arguments as kombu's JSON serializer reads them back.

    Plain values (what steps take) go through orjson; anything else through
    kombu's encoder, which tags the types (dates, UUIDs...) it restores on the
    other side.
    """
    if all(type(a) in _SCALARS for a in args):
        try:
            return orjson.dumps(args).decode()
        except orjson.JSONEncodeError:  # an int past 64 bits, a lone surrogate: json takes them
            pass
    return dumps(args)


_queues: dict[tuple[str, int], str] = {}


def _queue_of(app: Any, step: str) -> str:
    """The queue a step is routed to (routes go by step name alone, so it is looked up once)."""
    key = (step, id(app))
    queue = _queues.get(key)
    if queue is None:
        queue = _queues[key] = app.amqp.router.route({}, step, [], {})["queue"].name
    return queue


# (step, app, pid) -> (headers, properties, the JSON of the body's embed part) of Celery's message.
_templates: dict[tuple[str, int, int], tuple[dict[str, Any], dict[str, Any], str]] = {}


def _from_template(app: Any, step: str, task_id: str, args: list[Any], argsrepr: str | None,
                   root_id: str | None, parent_id: str | None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(headers, properties, embed JSON) of a message without ETA, from Celery's message for this step."""
    key = (step, id(app), os.getpid())  # the headers name the sending process
    template = _templates.get(key)
    if template is None:
        built = app.amqp.as_task_v2("template", step, args=[], kwargs={}, ignore_result=None)
        template = _templates[key] = (built.headers, built.properties, dumps(built.body[2]))
    if argsrepr is None:
        argsrepr = repr(args)
        if len(argsrepr) > app.amqp.argsrepr_maxsize:  # Celery shortens a long one
            argsrepr = saferepr(args, app.amqp.argsrepr_maxsize)
    headers = dict(template[0], id=task_id, root_id=root_id or task_id, parent_id=parent_id,
                   argsrepr=argsrepr, stamps={})
    return headers, dict(template[1], correlation_id=task_id), template[2]


def prepare(step: str, *args: Any, countdown: float | None = None, argsrepr: str | None = None) -> Outgoing:
    """Build (without sending) the message `send` would push; for writing it together with a record."""
    from workers.app import app

    return Outgoing(*message(app, step, list(args), countdown=countdown, argsrepr=argsrepr))


def bound_to(store: TaskStore) -> bool:
    """True when steps are queued on the very Redis (server and database) that holds `store`.

    Only then may a `prepare`d message be pushed by a store method in the same
    atomic step as a record; otherwise callers write first and `send` second.
    """
    from workers.app import app

    if send is not _SEND:  # replaced (a test capturing steps): every step must go through it
        return False
    url = str(app.conf.broker_url or "")
    if not _plain_redis(app, url):
        return False
    pool = store.redis.connection_pool
    key = (url, id(pool))
    known = _bound.get(key)
    if known is None:
        broker = parse_url(url)
        mine = pool.connection_kwargs
        fields = ("host", "port", "db", "path", "username")
        defaults = {"host": "localhost", "port": 6379, "db": 0, "path": None, "username": None}
        known = _bound[key] = all(str(broker.get(f, defaults[f])) == str(mine.get(f, defaults[f])) for f in fields)
    return known


def send(step: str, *args: Any, countdown: float | None = None, argsrepr: str | None = None) -> None:
    """Queue one step; raise QueueUnavailable when the broker does not answer.

    `argsrepr` replaces the arguments as Flower shows them (a large payload
    would otherwise be repr'd into the message headers).
    """
    from workers.app import app  # the Celery app is built on first use, not at import

    if not _plain_redis(app):
        try:
            app.send_task(step, args=list(args), countdown=countdown, argsrepr=argsrepr, retry=False)
        except OperationalError as exc:
            raise QueueUnavailable("the queue does not answer") from exc
        return
    queue, body = message(app, step, list(args), countdown=countdown, argsrepr=argsrepr)
    try:
        _broker(app.conf.broker_url).enqueue(queue, body)
    except StoreUnavailable as exc:
        raise QueueUnavailable("the queue (Redis) does not answer") from exc


_SEND = send
