"""GitHub pacing kept in Redis, so it holds across every worker process.

- the write budget: a sliding window of GitHub writes shared by all workers,
  and a pause every writer honours after GitHub answered "secondary rate limit";
- one status comment's pacing: when it was last written, and whether a later
  edit is already scheduled (the coalescing of `orchestrator.github.reporter`).
"""

from __future__ import annotations

import time
import uuid

from orchestrator.store.base import StoreBase
from orchestrator.store.keys import GITHUB_PAUSE, GITHUB_WRITES, comment_edited_key, comment_trailing_key


class GitHubPacing(StoreBase):
    """The shared GitHub write budget and the status comments' edit intervals."""

    def take_github_write(self, limit: int, *, window_seconds: float = 60.0, now: float | None = None) -> float:
        """Take one write from the budget; 0.0 when taken, else the seconds to wait before asking again."""
        now_ms = int((time.time() if now is None else now) * 1000)
        wait_ms = self._call(
            self._github_write_take,
            keys=[GITHUB_WRITES, GITHUB_PAUSE],
            args=[now_ms, int(window_seconds * 1000), int(limit), f"{now_ms}-{uuid.uuid4().hex[:12]}"],
        )
        return int(wait_ms) / 1000

    def pause_github_writes(self, seconds: float) -> float:
        """Hold every GitHub write for `seconds` (a longer pause already set stays); the pause now in force."""
        return int(self._call(self._github_write_pause, keys=[GITHUB_PAUSE], args=[max(1, int(seconds * 1000))])) / 1000

    def github_pause_left(self) -> float:
        """Seconds left of the pause GitHub asked for (0.0: none)."""
        return max(0, int(self._safe(self.redis.pttl, GITHUB_PAUSE))) / 1000

    def comment_edit_wait(self, ref: str) -> float:
        """Seconds until the task's status comment may be written again (0.0: now)."""
        left = self._safe(self.redis.pttl, comment_edited_key(ref))
        return max(0, int(left)) / 1000

    def mark_comment_edited(self, ref: str, interval_seconds: float) -> None:
        if interval_seconds > 0:
            self._safe(self.redis.set, comment_edited_key(ref), "1", px=max(1, int(interval_seconds * 1000)))

    def claim_trailing_edit(self, ref: str, ttl_seconds: float) -> bool:
        """True when this caller schedules the later edit; False when one is scheduled already."""
        return bool(
            self._safe(self.redis.set, comment_trailing_key(ref), "1", nx=True, px=max(1, int(ttl_seconds * 1000)))
        )

    def keep_trailing_edit(self, ref: str, ttl_seconds: float) -> None:
        self._safe(self.redis.set, comment_trailing_key(ref), "1", px=max(1, int(ttl_seconds * 1000)))

    def clear_trailing_edit(self, ref: str) -> None:
        self._safe(self.redis.delete, comment_trailing_key(ref))
