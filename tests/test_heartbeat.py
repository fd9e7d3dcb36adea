"""The consumer heartbeat: what a worker writes and how a probe judges it."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import heartbeat


def test_a_fresh_heartbeat_is_healthy_and_a_stale_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    heartbeat.write(path, now=1000.0)
    assert json.loads(path.read_text())["at"] == 1000.0
    assert heartbeat.verdict(path, 120, now=1100.0) == ""
    assert "no consumer heartbeat for 121 s" in heartbeat.verdict(path, 120, now=1121.0)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left beside it


def test_no_heartbeat_yet_is_healthy_unless_the_worker_has_been_up_too_long(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    assert heartbeat.verdict(path, 120) == ""
    assert heartbeat.verdict(path, 120, uptime=60) == ""
    assert "never connected" in heartbeat.verdict(path, 120, uptime=121)
    path.write_text("not json")
    assert heartbeat.verdict(path, 120) == ""


def test_work_waiting_untaken_for_too_long_is_a_stall(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    heartbeat.write(path, stalled_for=130.0, now=1000.0)
    assert "waited 130 s" in heartbeat.verdict(path, 120, now=1001.0)
    heartbeat.write(path, stalled_for=30.0, now=1000.0)
    assert heartbeat.verdict(path, 120, now=1001.0) == ""


def test_consumption_counts_only_waiting_work_with_a_free_slot_and_nothing_received() -> None:
    c = heartbeat.Consumption()
    assert c.observe(0.0, waiting=0, free_slots=2) == 0.0  # idle, nothing waits: healthy however long
    assert c.observe(500.0, waiting=0, free_slots=2) == 0.0
    assert c.observe(510.0, waiting=3, free_slots=2) == 0.0  # first look at waiting work
    assert c.observe(520.0, waiting=3, free_slots=2) == 10.0
    c.received(525.0)
    assert c.observe(530.0, waiting=3, free_slots=2) == 0.0  # it took one: the clock starts again
    assert c.observe(600.0, waiting=3, free_slots=2) == 70.0
    assert c.observe(610.0, waiting=3, free_slots=0) == 0.0  # every slot busy: not a stall
    assert c.observe(620.0, waiting=3, free_slots=1) == 0.0
