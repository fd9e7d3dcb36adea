"""Leases with fencing tokens (the watcher's leadership, workspace locks), and leases on followed log streams."""

from __future__ import annotations

from orchestrator.store.base import StoreBase
from orchestrator.store.keys import fence_key, follows_key, lease_key


class Leases(StoreBase):
    """Named leases, each with a strictly increasing fencing token."""

    # Leases ------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> int:
        """Take or extend the lease; returns its fencing token, 0 when held by another."""
        return int(
            self._call(self._acquire, keys=[lease_key(name), fence_key(name)], args=[holder, int(ttl_seconds * 1000)])
        )

    def renew_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        return bool(self._call(self._renew, keys=[lease_key(name)], args=[holder, int(ttl_seconds * 1000)]))

    def release_lease(self, name: str, holder: str) -> bool:
        return bool(self._call(self._release, keys=[lease_key(name)], args=[holder]))

    def lease_holder(self, name: str) -> str | None:
        return self._safe(self.redis.get, lease_key(name))

    def lease_state(self, name: str) -> tuple[str | None, int]:
        """(holder, newest fencing token) of a lease, read together (0 when none was issued)."""
        holder, fence = self._safe(self.redis.mget, [lease_key(name), fence_key(name)])
        return holder, int(fence or 0)

    # Followed log streams ------------------------------------------------------

    def acquire_follow(self, owner: str, stream_id: str, *, lease_seconds: float, limit: int) -> bool:
        """Take (or renew) a lease on one of `owner`'s `limit` followed log streams; False when all are held."""
        return bool(
            self._call(
                self._follow_acquire,
                keys=[follows_key(owner)],
                args=[stream_id, max(1, int(lease_seconds * 1000)), limit],
            )
        )

    def release_follow(self, owner: str, stream_id: str) -> None:
        self._safe(self.redis.zrem, follows_key(owner), stream_id)
