"""Leases with fencing tokens (the watcher's leadership, workspace locks), and leases on followed log streams."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.store.base import StoreBase
from orchestrator.store.errors import LeaseNotHeld
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

    def renew_leases(
        self,
        held: Iterable[tuple[str, str]],
        ttl_seconds: float,
        *,
        fence: tuple[str, str, int] | None = None,
        batch: int = 1000,
    ) -> int:
        """`renew_lease` for many (name, holder) pairs in pipelined batches; how many were extended.

        With `fence=(lease, holder, token)` each renewal happens only while that
        lease is still held with that token; LeaseNotHeld once it is not.
        """
        held = list(held)
        ttl = max(1, int(ttl_seconds * 1000))
        fence_keys = [lease_key(fence[0]), fence_key(fence[0])] if fence else []
        fence_args: list[str | int] = [fence[1], int(fence[2])] if fence else []
        renewed = 0
        for start in range(0, len(held), batch):
            pipe = self.redis.pipeline(transaction=False)
            for name, holder in held[start : start + batch]:
                self._renew(keys=[lease_key(name), *fence_keys], args=[holder, ttl, *fence_args], client=pipe)
            results = [int(r) for r in self._safe(pipe.execute)]
            if -2 in results:
                raise LeaseNotHeld(f"the lease {fence[0] if fence else ''} passed to another holder")
            renewed += sum(1 for r in results if r > 0)
        return renewed

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
