"""No-op Celery steps for bench/pipeline.py's baseline: a bare chain as long as the pipeline.

Loaded into the benchmark's workers with `--include bench.noop_steps`. The
last link records when it ran in one Redis list, the way the pipeline's last
step leaves a Job behind.
"""

from __future__ import annotations

import os
import time

import redis

from orchestrator.steps import Step
from workers.app import app

DONE_KEY = "bench:chain:done"
# The same queues as admit -> prepare_workspace -> launch_run.
QUEUES = (Step.ADMIT.queue, Step.PREPARE_WORKSPACE.queue, Step.LAUNCH_RUN.queue)

_client: redis.Redis | None = None


@app.task(name="bench.noop")
def noop(token: str) -> None:
    """Do nothing."""


@app.task(name="bench.noop_last")
def noop_last(token: str) -> None:
    """Record `token` and the time: the chain has reached its end."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["ORCHESTRATOR_REDIS_URL"])
    _client.rpush(DONE_KEY, f"{token} {time.time()!r}")
