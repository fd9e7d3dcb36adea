"""How long to wait before a retry: one formula for every retry loop.

`delay(attempt, base=..., cap=...)` is `base` x 2^attempt (attempt 0 is the
first retry), at most `cap`, times a random factor in [0.5, 1) so that the
retries of many callers (workers, runs, the watcher's streams) spread out
instead of arriving together; and never less than a `retry_after` the other
side asked for (still at most `cap`, so a caller that cannot wait that long
sees it and gives up or leaves it to a later step).

Who uses it: the Kubernetes client (API retries) and the watcher's watch
streams, the GitHub client (API retries) and the report step, the workspace
step (transient git failures), the event step (store away), the launch step
(a Kubernetes API that refuses for now), and the platform retries of a failed
run (`ORCHESTRATOR_RETRY_BACKOFF_SECONDS`, doubled per retry): runs that failed
together, under a lost node or an API outage, would otherwise all come back at
the same second. The wait chosen is shown in the task's status reason
("retry 2 of 3 in 47s").

Not a backoff: a busy workspace lease is polled at a fixed, jittered interval
(workspace/step.py, BUSY_COUNTDOWN), for a bounded time before the task goes
back to Queued; waiting longer between looks would not free it sooner.

`retry_after_seconds` reads a Retry-After header (seconds or an HTTP date, as
RFC 9110 allows), the same way for every HTTP API we call.
"""

from __future__ import annotations

import email.utils
import random


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (a number of seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def delay(
    attempt: int, *, base: float, cap: float = float("inf"), jitter: bool = True, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry `attempt` (0 for the first).

    Exponential, jittered, at least `retry_after`, at most `cap`.
    """
    wait = min(cap, base * (2 ** max(0, attempt)))
    if jitter:
        wait *= random.uniform(0.5, 1.0)
    if retry_after is not None:
        wait = max(wait, min(cap, retry_after))
    return wait
