"""The queue side of the store: Celery's queues as Kombu's Redis transport keeps them.

The only module of the store that knows Kombu's list and message format; the
others push a message through `queue_key` inside their own atomic scripts.
`message` wraps a Celery message (headers and body built by Celery, see
orchestrator/celery_dispatch.py) the way kombu's Redis transport does, so that one
LPUSH, alone or inside a store script, is a publish.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from kombu.utils.json import dumps as kombu_dumps

from orchestrator.store.base import StoreBase

# How kombu's Redis transport marks a message persistent.
PERSISTENT = 2
_SCALARS = (str, int, float, bool, type(None))


def new_id() -> str:
    """A random (version 4) UUID's text, as str(uuid.uuid4()) writes it, in a third of its time."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def json_args(args: list[Any]) -> str:
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
    return kombu_dumps(args)


def message(
    queue: str, headers: Mapping[str, Any], properties: dict[str, Any], args: list[Any], embed: str, *, reply_to: str
) -> bytes:
    """A Celery (protocol 2) message for `queue` in kombu's Redis envelope: what its transport LPUSHes.

    `embed` is the JSON of the body's third part (callbacks, chain...);
    `properties` are Celery's, completed here with the transport's own.
    """
    properties.update(
        reply_to=reply_to,
        delivery_mode=PERSISTENT,
        delivery_info={"exchange": "", "routing_key": queue},
        priority=0,
        body_encoding="base64",
        delivery_tag=new_id(),
    )
    envelope = {
        "body": base64.b64encode(f"[{json_args(args)},{{}},{embed}]".encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    # orjson: the envelope holds only strings, numbers, None and containers of them.
    return orjson.dumps(envelope)


# Kombu's Redis transport: the default priority steps are 0, 3, 6, 9; step 0 is
# the plain queue name, the others get a separator and the step appended.
QUEUE_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_keys(name: str) -> list[str]:
    """Every list of a queue, one per priority step."""
    return [name + suffix for suffix in QUEUE_PRIORITY_SUFFIXES]


def queue_key(name: str) -> str:
    """The list a priority-0 message of the queue is pushed onto."""
    return name + QUEUE_PRIORITY_SUFFIXES[0]


class Broker(StoreBase):
    """Publishing to and measuring Celery's queues."""

    def enqueue(self, queue: str, message: bytes | str) -> None:
        """Push one broker message onto a Celery queue, as kombu's Redis transport does.

        Kombu keeps a priority-0 message in the list named after the queue and
        its consumers BRPOP from the other end, so LPUSH is a plain publish.
        """
        self._safe(self.redis.lpush, queue_key(queue), message)

    def queue_depths(self, names: Iterable[str]) -> dict[str, int]:
        """Messages waiting in each Celery queue (for metrics).

        Kombu's Redis transport keeps a queue as a list named after it, plus
        one list per priority step (`<name>\\x06\\x16<priority>`); all are counted.
        """
        names = list(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            for key in queue_keys(name):
                pipe.llen(key)
        counts = self._safe(pipe.execute)
        per = len(QUEUE_PRIORITY_SUFFIXES)
        return {name: sum(int(n) for n in counts[i * per : (i + 1) * per]) for i, name in enumerate(names)}
