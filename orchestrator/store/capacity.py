"""Capacity: run slots under the global and per-service limits, and the admission index."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.states import Status
from orchestrator.store.base import StoreBase
from orchestrator.store.keys import (
    SLOTS_GLOBAL,
    SLOTS_HOLDERS,
    SLOTS_SERVICE_PREFIX,
    WAITING,
    slots_service,
    split_ref,
    task_key,
    task_ref,
)


class Capacity(StoreBase):
    """Run slots and the order tasks wait in for them."""

    # Capacity slots ------------------------------------------------------------

    def acquire_slot(
        self, run_id: str, service: str, *, lease_seconds: float, global_limit: int, service_limit: int
    ) -> int:
        """Take a run slot under both limits: 1 taken (or renewed), 0 global limit reached, -1 service limit."""
        return int(
            self._call(
                self._slot_acquire,
                keys=[SLOTS_GLOBAL, slots_service(service), SLOTS_HOLDERS],
                args=[run_id, service, max(1, int(lease_seconds * 1000)), global_limit, service_limit],
            )
        )

    def renew_slot(self, run_id: str, lease_seconds: float) -> bool:
        """Extend a held slot's lease; False when the run holds none."""
        return bool(
            self._call(
                self._slot_renew,
                keys=[SLOTS_GLOBAL, SLOTS_HOLDERS],
                args=[run_id, max(1, int(lease_seconds * 1000)), SLOTS_SERVICE_PREFIX],
            )
        )

    def renew_slots(self, run_ids: Iterable[str], lease_seconds: float, *, batch: int = 1000) -> None:
        """`renew_slot` for many runs, in pipelined batches."""
        run_ids = list(run_ids)
        lease = max(1, int(lease_seconds * 1000))
        for start in range(0, len(run_ids), batch):
            pipe = self.redis.pipeline(transaction=False)
            for run_id in run_ids[start : start + batch]:
                self._slot_renew(
                    keys=[SLOTS_GLOBAL, SLOTS_HOLDERS], args=[run_id, lease, SLOTS_SERVICE_PREFIX], client=pipe
                )
            self._safe(pipe.execute)

    def release_slot(self, run_id: str) -> bool:
        """Free the run's slot; False when it held none (already released or expired)."""
        return bool(
            self._call(self._slot_release, keys=[SLOTS_GLOBAL, SLOTS_HOLDERS], args=[run_id, SLOTS_SERVICE_PREFIX])
        )

    def slot_holders(self) -> dict[str, tuple[str, float]]:
        """Every run recorded as holding a slot: run id -> (service, lease expiry in epoch seconds).

        Expired holders are included (expiry in the past) until an acquisition
        or `release_slot` drops them, so a sweep can see and clean them.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(SLOTS_GLOBAL, 0, -1, withscores=True)
        pipe.hgetall(SLOTS_HOLDERS)
        members, services = self._safe(pipe.execute)
        held = {run_id: (services.get(run_id, ""), score / 1000.0) for run_id, score in members}
        for run_id, service in services.items():  # in the hash but gone from the set: expired and purged
            held.setdefault(run_id, (service, 0.0))
        return held

    def slot_counts(self) -> tuple[int, dict[str, int]]:
        """Live (unexpired) slots: the global count and the count per service."""
        seconds, micros = self._safe(self.redis.time)
        now_ms = seconds * 1000 + micros // 1000
        holders = self.slot_holders()
        live = [service for service, expiry in holders.values() if expiry * 1000 > now_ms]
        per_service: dict[str, int] = {}
        for service in live:
            per_service[service] = per_service.get(service, 0) + 1
        return len(live), per_service

    # Admission order -------------------------------------------------------------

    def add_waiting(self, service: str, task_id: int, score: float) -> None:
        """Put a task in the admission index (lowest score admitted first); keeps an existing score."""
        self._safe(self.redis.zadd, WAITING, {task_ref(service, task_id): score}, nx=True)

    def remove_waiting(self, service: str, task_id: int, *, keep: Iterable[Status | str] = ()) -> bool:
        """Drop a task from the admission index, unless its status is (still) one of `keep`.

        The check and the removal are one step: a walker that read a stale
        status cannot drop a task that was queued again meanwhile.
        """
        return bool(
            self._call(
                self._waiting_remove,
                keys=[WAITING, task_key(service, task_id)],
                args=[task_ref(service, task_id), ",".join(Status(s).value for s in keep)],
            )
        )

    def waiting(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Tasks waiting for capacity, in admission order."""
        end = -1 if limit is None else limit - 1
        return [split_ref(m) for m in self._safe(self.redis.zrange, WAITING, 0, end)]
