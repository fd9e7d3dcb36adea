"""Redis restarted under a stream of submissions (issue #19, item 1), at a size CI can afford.

The scenario of tests/support/restart_load.py: the API, the worker and the
watcher are supervised as `orchestrator up` supervises them, Redis stops
(SIGTERM, AOF kept) or crashes (SIGKILL, appendfsync always) for 10 s while
tasks stream in, or the API is killed, and every accepted task must end, with
its agent started once, within 3 minutes of Redis (or the API) coming back. The full-size run, with the default recovery settings, is
bench/redis_restart.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.restart_load import Outage, RestartLoad

SETTLE_SECONDS = 180.0

SCENARIOS = {
    "sigterm": [Outage("sigterm", 10)],
    "sigterm-twice": [Outage("sigterm", 10), Outage("sigterm", 10, after=20)],
    "sigkill": [Outage("sigkill", 10)],
    # kill -9 of the API as a pod dies: what it had answered 202 is stored, the rest got no answer
    "api-kill": [Outage("api", 0)],
}


# A third of the defaults (a reconcile every 30 s, a step re-driven after 90 s stuck), to keep CI short;
# bench/redis_restart.py runs the defaults at full size. The broker's visibility timeout stays an hour.
QUICKER = {"ORCHESTRATOR_RECONCILE_SECONDS": "10", "ORCHESTRATOR_STUCK_AFTER_SECONDS": "30"}


@pytest.fixture
def load(tmp_path: Path) -> Iterator[RestartLoad]:
    scenario = RestartLoad(tmp_path, tasks=40, rate=20.0, tasks_before=20, env=QUICKER)
    try:
        scenario.up()
        yield scenario
    finally:
        scenario.down()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_accepted_task_ends_once_after_redis_restarts_under_load(load: RestartLoad, scenario: str) -> None:
    result = load.run(SCENARIOS[scenario], settle_timeout=SETTLE_SECONDS)
    print(result.summary())
    logs = load.stack.dump_logs()
    assert result.accepted == 40, result.summary()
    # only 202 and 503 (and, while the API itself is down, no answer at all)
    assert set(result.other_answers) <= ({0} if scenario == "api-kill" else set()), result.summary()
    assert not result.lost, f"{result.summary()}\n{logs}"
    assert not result.twice, result.summary()
    assert not result.not_succeeded, result.summary()
    assert result.recovery_seconds is not None and result.recovery_seconds <= SETTLE_SECONDS
