"""The worker's consumer heartbeat: a small file a consuming worker rewrites, and the judgement read from it.

Celery on Redis can stay alive after the broker came back without consuming
any more (celery #8030, #8384, #10205; kombu #970): the process runs, `celery
inspect ping` may even answer, and the queues grow. The worker
(workers/heartbeat.py) therefore rewrites this file from its consumer's own
event loop every BEAT_SECONDS while its consumer runs, so the file goes stale
when the loop is stuck or the consumer never got its connection back; and it
records for how long work has waited in its queues while it had a free slot
and received nothing, so a consumer that runs but does not drain is caught
too. An idle worker with empty queues is healthy.

Read by the chart's liveness probe (`orchestrator worker-alive`) and by
`orchestrator up`'s supervisor, which restart the worker when `verdict` says why.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

# How often a consuming worker rewrites its heartbeat.
BEAT_SECONDS = 10.0
# Older than this (or work waiting unconsumed for this long): the worker is not consuming.
# Long enough for a broker restart and Celery's reconnect; short next to the stuck threshold's re-drive.
DEFAULT_MAX_AGE = 120.0


@dataclass
class Consumption:
    """Whether work waits that this worker could take and does not: fed one observation per beat."""

    stalled_since: float | None = None
    last_received: float = 0.0

    def received(self, at: float) -> None:
        self.last_received = max(self.last_received, at)

    def observe(self, now: float, *, waiting: int, free_slots: int) -> float:
        """Seconds work has waited while this worker had a free slot and received nothing (0: consuming)."""
        if waiting <= 0 or free_slots <= 0:
            self.stalled_since = None  # nothing to take, or busy: not a stall
            return 0.0
        if self.stalled_since is None or self.last_received > self.stalled_since:
            self.stalled_since = now  # the first look at waiting work, or it took a message since
            return 0.0
        return now - self.stalled_since


def write(path: Path, *, stalled_for: float = 0.0, detail: str = "", now: float | None = None) -> None:
    """Rewrite the heartbeat atomically (a reader never sees half a file)."""
    record = {
        "at": time.time() if now is None else now,
        "pid": os.getpid(),
        "stalled_for": round(stalled_for, 1),
        "detail": detail,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def read(path: Path) -> dict[str, object] | None:
    """The last heartbeat, or None when there is none (yet) or it cannot be read."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def verdict(
    path: Path, max_age: float = DEFAULT_MAX_AGE, now: float | None = None, *, uptime: float | None = None
) -> str:
    """Why the worker is not consuming, or "" when it is.

    A worker deletes its old heartbeat when it starts, so one still starting has
    none: that counts as stuck only when the caller knows the worker's `uptime`
    and it is past `max_age` (a probe's own start-up allowance covers the rest).
    """
    now = time.time() if now is None else now
    record = read(path)
    if record is None:
        if uptime is not None and uptime > max_age:
            return f"no consumer heartbeat {uptime:.0f} s after the start (the consumer never connected)"
        return ""
    at = _number(record.get("at"))
    if now - at > max_age:
        return f"no consumer heartbeat for {now - at:.0f} s (the consumer is stuck or never reconnected)"
    stalled = _number(record.get("stalled_for"))
    if stalled > max_age:
        return f"work waited {stalled:.0f} s in its queues while the worker had a free slot and took none"
    return ""


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
