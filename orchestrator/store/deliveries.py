"""Deliveries: idempotency keys, webhook claims, pending events and pull-request links."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrator.store.base import StoreBase
from orchestrator.store.broker import queue_key
from orchestrator.store.keys import (
    EVENTS_PENDING,
    delivery_key,
    event_handled_key,
    event_identity_key,
    event_pending_key,
    idem_key,
    pull_request_key,
    split_ref,
    task_ref,
)


class Deliveries(StoreBase):
    """What makes intake idempotent and webhook events re-sendable."""

    # Idempotency and dedupe --------------------------------------------------

    def get_idempotent(self, key: str) -> Any:
        """The value stored with a submission's Idempotency-Key, or None."""
        raw = self._safe(self.redis.get, idem_key(key))
        return json.loads(raw) if raw else None

    def claim_delivery(
        self,
        delivery_id: str,
        ttl: int,
        *,
        enqueue: tuple[str, bytes | str] | None = None,
        pending: tuple[str, str | bytes] | None = None,
        now: float | None = None,
    ) -> bool:
        """Mark a webhook delivery as accepted; False when it already was.

        Only when the claim is new, and in the same atomic step: `pending=(event,
        body)` keeps the event as `keep_pending_event` does, and
        `enqueue=(queue, message)` pushes its message. A claimed delivery is
        then always queued and kept.
        """
        if enqueue is None and pending is None:
            return bool(self._safe(self.redis.set, delivery_key(delivery_id), "1", nx=True, ex=ttl))
        now = time.time() if now is None else now
        event, body = pending or ("", "")
        keys = [
            delivery_key(delivery_id),
            queue_key(enqueue[0]) if enqueue else delivery_key(delivery_id),
            event_pending_key(delivery_id),
            EVENTS_PENDING,
        ]
        return bool(
            int(
                self._call(
                    self._claim_delivery,
                    keys=keys,
                    args=[ttl, enqueue[1] if enqueue else "", event, body, repr(now), delivery_id],
                    replicated=True,
                )
            )
        )

    def claim_event(self, identity: str, delivery_id: str, ttl: int) -> bool:
        """Mark the event itself (a comment, a review) as received by this delivery; False when another
        delivery already brought it (a replay under a new delivery id). The same delivery again is
        True, so GitHub's redelivery of a delivery refused by an outage still gets through."""
        key = event_identity_key(identity)
        if self._safe(self.redis.set, key, delivery_id, nx=True, ex=ttl):
            return True
        holder = self._safe(self.redis.get, key)
        return (holder.decode() if isinstance(holder, bytes) else holder) == delivery_id

    def release_delivery(self, delivery_id: str) -> None:
        """Forget a delivery whose processing failed before it was queued."""
        self._safe(self.redis.delete, delivery_key(delivery_id))

    def event_handled(self, delivery_id: str) -> bool:
        """True when the queued event of this delivery was already acted on."""
        return bool(self._safe(self.redis.exists, event_handled_key(delivery_id)))

    def mark_event_handled(self, delivery_id: str, ttl: int) -> None:
        """Remember that this delivery's event was acted on (a redelivered step skips it); drop its pending copy."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(event_handled_key(delivery_id), "1", ex=ttl)
        pipe.zrem(EVENTS_PENDING, delivery_id)
        pipe.delete(event_pending_key(delivery_id))
        self._safe(pipe.execute)

    def keep_pending_event(
        self, delivery_id: str, event: str, body: str | bytes, ttl: int, now: float | None = None
    ) -> None:
        """Keep an accepted delivery's event until it is acted on, so a lost queue message can be re-sent.

        The queue message alone is not enough: a worker that took it and lost its
        connection leaves it unacknowledged until the broker's visibility timeout
        (an hour); the reconcile loop re-sends it from this copy much sooner.
        """
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(event_pending_key(delivery_id), mapping={"event": event, "body": body, "resent": 0})
        pipe.expire(event_pending_key(delivery_id), ttl)
        pipe.zadd(EVENTS_PENDING, {delivery_id: now})
        self._safe(pipe.execute)

    def pending_event(self, delivery_id: str) -> tuple[str, str] | None:
        """(event, body) of an accepted delivery not yet acted on; None once handled (or expired)."""
        event, body = self._safe(self.redis.hmget, event_pending_key(delivery_id), ["event", "body"])
        return None if body is None else (event or "", body)

    def drop_pending_event(self, delivery_id: str) -> None:
        """Forget an accepted delivery's pending event (refused before it was queued, or given up)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(EVENTS_PENDING, delivery_id)
        pipe.delete(event_pending_key(delivery_id))
        self._safe(pipe.execute)

    def pending_events(self, queued_before: float, limit: int = 100) -> list[tuple[str, str, str, int]]:
        """(delivery id, event, body, times re-sent) of events queued before `queued_before` and not acted on."""
        ids = self._safe(self.redis.zrangebyscore, EVENTS_PENDING, "-inf", queued_before, start=0, num=limit)
        found = []
        for delivery_id in ids:
            raw = self._safe(self.redis.hgetall, event_pending_key(delivery_id))
            if not raw or "body" not in raw:
                self._safe(self.redis.zrem, EVENTS_PENDING, delivery_id)  # expired: nothing to re-send
                continue
            found.append((delivery_id, raw.get("event", ""), raw["body"], int(raw.get("resent") or 0)))
        return found

    def requeued_pending_event(self, delivery_id: str, now: float | None = None) -> None:
        """Record that a pending event was queued again (counted; not re-sent again before the next threshold)."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(EVENTS_PENDING, {delivery_id: now}, xx=True)
        pipe.hincrby(event_pending_key(delivery_id), "resent", 1)
        self._safe(pipe.execute)

    # GitHub pull requests ------------------------------------------------------

    def link_pull_request(self, key: str, service: str, task_id: int) -> None:
        """Remember which task a pull request (`owner/repo#n`) belongs to."""
        self._safe(self.redis.set, pull_request_key(key), task_ref(service, task_id))

    def unlink_pull_request(self, key: str, service: str, task_id: int) -> None:
        """Forget a pull request's link, if it still names that task (retention deleted the task)."""
        name = pull_request_key(key)
        # Not atomic, and needs not be: a pull request belongs to one task for its whole life.
        if self._safe(self.redis.get, name) == task_ref(service, task_id):
            self._safe(self.redis.delete, name)

    def task_for_pull_request(self, key: str) -> tuple[str, int] | None:
        """(service, task id) linked to a pull request, or None."""
        ref = self._safe(self.redis.get, pull_request_key(key))
        return split_ref(ref) if ref else None
