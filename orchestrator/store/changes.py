"""The stream of status changes that live pages follow, written by transition.lua with each change."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.store.base import StoreBase
from orchestrator.store.keys import STATUS_CHANGES


@dataclass(frozen=True)
class StatusChange:
    """One status change as the stream holds it."""

    ref: str
    status: str
    reason: str
    at: float


class StatusChanges(StoreBase):
    """Reading the stream of status changes."""

    def status_changes_cursor(self) -> str:
        """The id of the newest change (a reader starting now asks for what comes after it)."""
        newest = self._safe(self.redis.xrevrange, STATUS_CHANGES, "+", "-", count=1)
        return str(newest[0][0]) if newest else "0-0"

    def status_changes(self, after: str, *, block_ms: int, count: int = 1000) -> tuple[str, list[StatusChange]]:
        """(new cursor, changes after `after`), waiting up to `block_ms` for the first one.

        `block_ms` must stay under the client's socket timeout (5 s): a blocked
        read is a read like any other to it.
        """
        answer = self._safe(self.redis.xread, {STATUS_CHANGES: after}, count=count, block=block_ms)
        changes: list[StatusChange] = []
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                after = str(entry_id)
                try:
                    at = float(fields.get("at", "0"))
                except ValueError:
                    at = 0.0
                ref, status, reason = fields.get("ref", ""), fields.get("status", ""), fields.get("reason", "")
                changes.append(StatusChange(ref, status, reason, at))
        return after, changes
