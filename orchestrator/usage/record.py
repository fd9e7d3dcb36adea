"""At a run's end: read its output once, store its usage, and say what its stream reports."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any

from orchestrator.metrics import registry as metrics
from orchestrator.model import Run, RunPhase
from orchestrator.runners import get_runner
from orchestrator.settings import Settings
from orchestrator.usage.budget import today
from orchestrator.usage.stream import StreamParser, Verdict

log = logging.getLogger("orchestrator.usage")


def read_stream(settings: Settings, run_id: str, runner: Any = None) -> tuple[StreamParser | None, bool]:
    """(The run's output fed through a parser a line at a time, whether it was read to its end).

    The parser is None when nothing could be read.
    """
    parser = StreamParser()
    try:
        runner = runner or get_runner(settings)
        for line in runner.logs(run_id, follow=False):
            parser.feed(line)
    except Exception:
        # A partly read output still says what it said (a pod log cut by its removal).
        log.info("the output of run %s could not be read to its end", run_id, exc_info=True)
        return (parser if parser.lines else None), False
    return parser, True


def at(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def account_run(
    store: Any, settings: Settings, run: Run, agent: str = "", *, runner: Any = None, now: float | None = None
) -> Verdict:
    """Store the run's usage (counted once into the day's totals) and return its stream's verdict.

    An agent that prints no stream-json gets no usage and an empty verdict;
    nothing here fails the finish.
    """
    now = time.time() if now is None else now
    if run.outcome:
        return Verdict()  # the finish after delivery: the first finish read the stream, and it was clean
    parser, whole = read_stream(settings, run.run_id, runner)
    if parser is None:
        return Verdict()
    usage = parser.usage()
    if usage is not None:
        try:
            if store.record_usage(run.run_id, run.service, run.agent or agent, usage, day=today(now)):
                metrics.agent_usage(run.service, run.agent or agent, usage)  # counted now, so only once
        except Exception:
            log.warning("could not record the usage of run %s", run.run_id, exc_info=True)
    verdict = parser.verdict(now=now)
    if verdict.cut and not whole:
        return Verdict()  # we failed to read its end, not the agent to write it
    return verdict


def honest_end(store: Any, run: Run, verdict: Verdict) -> Run:
    """The run as its stream tells its end: a reported failure fails it (not retried); a rate limit waits.

    Returns the run with the fields written on it; unchanged when the stream reports nothing.
    """
    if not verdict.failed:
        return run
    platform = run.retryable
    if platform and not verdict.rate_limited_until:
        return run  # lost or evicted: the platform's reason (and its retry) stands
    if verdict.cut and run.phase == RunPhase.FAILED:
        return run  # crashed, timed out: its exit says more than a stream cut short
    if verdict.rate_limited_until:
        ended = dataclasses.replace(
            run,
            phase=RunPhase.FAILED,
            retryable=False,
            failure_reason=f"model rate limit; resumes at {at(verdict.rate_limited_until)}",
            rate_limited_until=verdict.rate_limited_until,
        )
    else:
        ended = dataclasses.replace(run, phase=RunPhase.FAILED, failure_reason=verdict.reason[:1000], retryable=False)
    store.update_run(
        run.run_id,
        phase=ended.phase,
        failure_reason=ended.failure_reason,
        retryable="0",
        **({"rate_limited_until": ended.rate_limited_until} if ended.rate_limited_until else {}),
    )
    return ended
