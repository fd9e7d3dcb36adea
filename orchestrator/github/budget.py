"""One budget for every GitHub write, shared by all worker processes through Redis.

GitHub's secondary rate limit allows about 80 content-creating requests a
minute per token, counted across everything that uses the token: comments from
the reporter and pull requests from delivery, in any number of workers. A
per-process limiter cannot see the others, so the window lives in the store
(`take_github_write`), and so does the pause GitHub asks for with
`Retry-After` or `x-ratelimit-reset` after a 403 or 429: once one worker is
told to wait, every worker waits.

A writer waits here only as long as a step may block (`max_wait`); past that
it raises a transient `GitHubError` carrying the wait, and its step retries
later, so no write is dropped for the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("orchestrator.github")

WINDOW_SECONDS = 60.0
# GitHub: "If the retry-after header is not present, wait at least one minute."
SECONDARY_LIMIT_WAIT = 60.0


class Pacing(Protocol):
    """What the budget needs of the store."""

    def take_github_write(self, limit: int, *, window_seconds: float = ..., now: float | None = ...) -> float: ...

    def pause_github_writes(self, seconds: float) -> float: ...

    def github_pause_left(self) -> float: ...


class BudgetSpent(Exception):
    """No write may go out before `wait` seconds; the caller retries later."""

    def __init__(self, wait: float):
        super().__init__(f"the shared GitHub write budget is spent for {wait:.0f}s")
        self.wait = wait


class WriteBudget:
    """Takes one write from the shared budget before each GitHub write; records GitHub's pauses."""

    def __init__(
        self,
        pacing: Pacing,
        per_minute: int,
        *,
        max_wait: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.pacing = pacing
        self.per_minute = per_minute
        self.max_wait = max_wait
        self.sleep = sleep

    def take(self, *, write: bool = True) -> None:
        """Return once a write may go out; raise BudgetSpent when that is further off than `max_wait`.

        A read (`write=False`) takes nothing from the budget but waits out GitHub's pause all the
        same: requests sent while rate limited only make the limit last longer.
        """
        waited = 0.0
        while True:
            if write:
                wait = self.pacing.take_github_write(self.per_minute, window_seconds=WINDOW_SECONDS)
            else:
                wait = self.pacing.github_pause_left()
            if wait <= 0:
                return
            if waited + wait > self.max_wait:
                raise BudgetSpent(wait)
            log.info("GitHub write budget: waiting %.1fs", wait)
            self.sleep(wait)
            waited += wait

    def pause(self, seconds: float | None) -> float:
        """GitHub said "slow down": no writer writes for `seconds` (a minute when it did not say)."""
        return self.pacing.pause_github_writes(seconds if seconds and seconds > 0 else SECONDARY_LIMIT_WAIT)
