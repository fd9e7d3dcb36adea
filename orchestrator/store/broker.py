"""The queue side of the store: Celery's queues as Kombu's Redis transport keeps them.

The only module of the store that knows Kombu's list format; the others push a
message through `queue_key` inside their own atomic scripts.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.store.base import StoreBase

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
        return {name: sum(int(n) for n in counts[i * per:(i + 1) * per]) for i, name in enumerate(names)}
