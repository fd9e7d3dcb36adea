"""Leases with fencing tokens (the watcher's leadership, workspace locks)."""

from __future__ import annotations


import redis

from orchestrator.store.base import StoreBase
from orchestrator.store.keys import lease_key, fence_key


class Leases(StoreBase):
    """Named leases, each with a strictly increasing fencing token."""

    # Leases ------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> int:
        """Take or extend the lease; returns its fencing token, 0 when held by another."""
        return int(self._call(self._acquire, keys=[lease_key(name), fence_key(name)],
                              args=[holder, int(ttl_seconds * 1000)]))

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
