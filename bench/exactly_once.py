"""The whole fault matrix of issue #22: every side effect at every kill point, counted where it is received.

    python bench/exactly_once.py                 # every cell, 3 tasks each
    python bench/exactly_once.py --tasks 5 --json /tmp/exactly_once.json

The system runs as separate processes (redis-server, gunicorn, one Celery
worker, the watcher) with the local runner; tasks arrive as signed GitHub
webhooks (a labelled issue) for one service, so each goes through every
step: admit, prepare, launch, track, finish, deliver (push, pull request),
report (status comment). For each cell the only worker pauses at one point
(tests/support/step_hooks.py) the first time a task gets there, is killed
there with SIGKILL, and a fresh worker is started. Counted for every task:
agent starts (the counting agent's own file), pushes (the bare repository's
post-receive hook), pull request POSTs and comment POSTs (the GitHub
emulator's request log); every count should be exactly one and every task
should succeed. "recovery" is from the fresh worker's start to the last
task's end; it is bounded below by the stuck threshold (5 s here) where a
lost message has to be re-driven by the reconcile loop. "settled" is from
the same start to the last effect counted: a report killed before its
comment is retried once the dead worker's report lock lapses (a minute).

Cells: inside a step after its own effect (admit, prepare_workspace,
finish_run, as in tests/faults/test_worker_faults.py), and before / between
/ after of each recorded effect (local-agent, push, pull-request, comment).
The watcher killed while runs end ("track") is the last cell: it restarts at
once, as a supervisor would. The Kubernetes runner's Job creates are counted
by tests/faults/test_exactly_once.py against the API emulator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.test_effects_matrix import EXPECTED, SERVICE, EffectsWorld  # noqa: E402

EFFECT_KINDS = ("local-agent", "push", "pull-request", "comment")
CELLS: list[tuple[str, str]] = [
    ("admit", "admit"),
    ("prepare", "prepare_workspace"),
    *[("launch", f"local-agent.{p}") for p in ("before", "between", "after")],
    ("finish", "finish_run"),
    *[("deliver", f"{kind}.{p}") for kind in ("push", "pull-request") for p in ("before", "between", "after")],
    *[("report", f"comment.{p}") for p in ("before", "between", "after")],
]
COUNTED = [key for key in EXPECTED if key not in {"status", "runs", "succeeded"}]


def kill_watcher_cell(world: EffectsWorld, issues: list[int]) -> float:
    """The watcher killed while the tasks' agents run, and started again at once."""
    for issue in issues:
        world.open_issue(issue)
    deadline = time.monotonic() + 60
    def status() -> str:
        code, body = world.stack.request("GET", f"/api/v1/pm/tasks/{SERVICE}/{world.task_id(issues[0])}")
        return body["status"] if code == 200 else ""

    while status() not in {"Launching", "Running"}:
        if time.monotonic() > deadline:
            raise AssertionError("the first task never launched")
        time.sleep(0.05)
    world.stack.processes["watcher"].kill()
    started = time.monotonic()
    world.stack.start_watcher()
    for issue in issues:
        world.stack.wait_end(SERVICE, world.task_id(issue), timeout=120)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3, help="tasks per cell")
    parser.add_argument("--only", default="", help="comma-separated pause points (default: every cell)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    args = parser.parse_args()
    cells = CELLS + [("track", "watcher")]
    if args.only:
        wanted = set(args.only.split(","))
        cells = [cell for cell in cells if cell[1] in wanted]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-exactly-once-") as tmp:
        world = EffectsWorld(Path(tmp))
        world.comment_wait = 90.0  # a report killed before its comment waits for its lock (a minute)
        world.up()
        try:
            issue = 100
            for step, point in cells:
                issues = list(range(issue, issue + args.tasks))
                issue += args.tasks
                if point == "watcher":
                    recovery = kill_watcher_cell(world, issues)
                else:
                    recovery = world.kill_at(point, *issues)
                restarted = time.monotonic() - recovery
                effects = duplicates = missing = wrong_end = 0
                for number in issues:
                    counts = world.counts(number)
                    wrong_end += counts["status"] != "Succeeded" or counts["runs"] != 1 or counts["succeeded"] != 1
                    for key in COUNTED:
                        effects += counts[key]
                        duplicates += max(0, counts[key] - 1)
                        missing += counts[key] == 0
                settled = time.monotonic() - restarted  # to the last effect counted (the comment's report)
                rows.append({"step": step, "point": point, "tasks": len(issues), "effects": effects,
                             "settled_s": round(settled, 1),
                             "expected": len(issues) * len(COUNTED), "duplicates": duplicates, "missing": missing,
                             "wrong_end": wrong_end, "recovery_s": round(recovery, 1)})
                print(f"{step:8} {point:22} tasks {len(issues)}  effects {effects}/{len(issues) * len(COUNTED)}  "
                      f"duplicates {duplicates}  missing {missing}  wrong end {wrong_end}  "
                      f"recovery {recovery:.1f} s  settled {settled:.1f} s", flush=True)
        finally:
            world.down()
    total_dup = sum(r["duplicates"] for r in rows)
    total_missing = sum(r["missing"] for r in rows)
    print()
    print("| step | kill point | tasks | effects counted (expected) | duplicates | missing | wrong end "
          "| recovery (tasks ended) | settled (every effect counted) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['step']} | {r['point']} | {r['tasks']} | {r['effects']} ({r['expected']}) | {r['duplicates']} "
              f"| {r['missing']} | {r['wrong_end']} | {r['recovery_s']} s | {r['settled_s']} s |")
    print(f"\n{len(rows)} cells, duplicates {total_dup} (target 0), missing {total_missing} (target 0)")
    if args.json:
        args.json.write_text(json.dumps({"tasks": args.tasks, "cells": rows, "duplicates": total_dup,
                                         "missing": total_missing,
                                         "wrong_end": sum(r["wrong_end"] for r in rows)}))
    return 0 if total_dup == 0 and total_missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
