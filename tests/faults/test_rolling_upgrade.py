"""A rolling upgrade under load (issue #19, item 8): every process replaced, no accepted work lost, none run twice.

The scenario of tests/support/rolling_upgrade.py: two API gunicorns, two
Celery workers and two watchers (leader and standby) are replaced as the
chart's Deployments roll them (their strategy, the API's preStop pause and the
grace periods read from the rendered chart; a pod leaves the endpoints 1 s
after its termination began) while about twenty tasks of three seconds each
stream in. On the chart before issue #19's item 8 (the API with no preStop
pause, the watcher `Recreate`) submissions met a closed socket and both
watchers went at once. Every accepted task must end Succeeded with
its agent started once, no submission may be refused or dropped, every old
process must leave within its grace period, and a standby must take the
watcher lease. bench/rolling_upgrade.py times the same roll.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rolling_upgrade import RollingUpgrade

pytest.importorskip("helm_python")  # the roll follows the chart's strategies, preStop and grace periods

# The first worker is SIGTERMed while its local agent was started and not yet recorded (the worst moment
# of a launch), the second while it read a run's outputs and did not record the outcome yet.
PAUSES = {"worker-a": "local-agent.between", "worker-b": "finish_run"}


@pytest.fixture
def upgrade(tmp_path: Path) -> Iterator[RollingUpgrade]:
    scenario = RollingUpgrade(
        tmp_path, tasks=20, rate=1.0, tasks_before=4, agent_seconds=3.0, pauses=PAUSES, grace_cap_seconds=60.0
    )
    try:
        scenario.up()
        yield scenario
    finally:
        scenario.down()


def test_a_rolling_upgrade_under_load_loses_nothing_and_runs_nothing_twice(upgrade: RollingUpgrade) -> None:
    result = upgrade.run(settle_timeout=90.0)
    print(result.summary())
    print("\n".join(result.replaced))
    logs = upgrade.stack.dump_logs()
    assert result.accepted >= 20, result.summary()  # and one stale-routed submission per API pod
    assert set(result.answers) == {202}, f"{result.summary()}\n{logs}"  # not even a 503 during the swaps
    assert not result.lost, f"{result.summary()}\n{logs}"
    assert not result.not_succeeded, f"{result.summary()}\n{logs}"
    assert not result.twice, result.summary()
    assert not result.never_started, result.summary()
    assert not result.killed, f"{result.summary()}\n{result.replaced}\n{logs}"
    assert len(result.finished_in_shutdown) == 2, f"{result.summary()}\n{result.replaced}\n{logs}"
    assert result.standby_took_lease, f"{result.summary()}\n{logs}"
