"""The supervisor of `orchestrator up`: a child that exits is started again with backoff, a stuck one is stopped."""

from __future__ import annotations

from orchestrator.cli.supervise import Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Child:
    def __init__(self) -> None:
        self.code: int | None = None
        self.starts = 0
        self.kills = 0
        self.fail_starts = 0

    def poll(self) -> int | None:
        return self.code

    def restart(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("no")
        self.starts += 1
        self.code = None

    def kill(self) -> None:
        self.kills += 1
        self.code = -9


def test_a_child_that_exits_is_started_again_after_a_growing_wait_reset_once_it_stayed_up() -> None:
    clock, child = Clock(), Child()
    sup = Supervisor({"worker": child}, base_delay=1.0, max_delay=8.0, healthy_after=60.0, clock=clock)
    assert sup.check() == []
    waits = []
    for _ in range(5):  # dies at once, every time
        child.code = 1
        [exited] = sup.check()
        assert exited.what == "exited" and exited.code == 1
        waits.append(exited.wait)
        assert sup.check() == [] and child.starts == len(waits) - 1  # not before its wait is over
        clock.now += exited.wait
        assert [e.what for e in sup.check()] == ["restarted"]
    # Jittered doubling (x0.5..1), capped.
    assert waits[0] <= 1.0 and waits[-1] <= 8.0 and waits[-1] > waits[0]
    assert sup.restarts["worker"] == 5
    # Up for longer than healthy_after: its next death waits the first wait again.
    clock.now += 61
    child.code = 1
    [exited] = sup.check()
    assert exited.wait <= 1.0


def test_a_failed_start_is_tried_again_and_other_children_go_on() -> None:
    clock, worker, watcher = Clock(), Child(), Child()
    sup = Supervisor({"worker": worker, "watcher": watcher}, base_delay=1.0, clock=clock)
    worker.code = 1
    worker.fail_starts = 1
    sup.check()
    clock.now += 1
    assert [e.what for e in sup.check()] == ["restart failed"]
    assert watcher.starts == 0
    clock.now += 2
    assert [e.what for e in sup.check()] == ["restarted"] and worker.starts == 1


def test_a_live_child_that_is_stuck_is_stopped_then_started_again() -> None:
    clock, child = Clock(), Child()
    verdicts = {"why": ""}
    uptimes: list[float] = []

    def stalled(uptime: float) -> str:
        uptimes.append(uptime)
        return verdicts["why"]

    sup = Supervisor({"worker": child}, base_delay=1.0, clock=clock, stalled={"worker": stalled})
    clock.now += 5
    assert sup.check() == [] and uptimes == [5.0]
    verdicts["why"] = "no heartbeat"
    [event] = sup.check()
    assert event.what == "stalled" and child.kills == 1
    verdicts["why"] = ""
    assert [e.what for e in sup.check()] == ["exited"]
    clock.now += 1
    assert [e.what for e in sup.check()] == ["restarted"] and child.starts == 1
