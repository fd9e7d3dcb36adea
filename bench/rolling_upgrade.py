"""A rolling upgrade under load (issue #19, item 8): time until every accepted task settled, none lost, none run twice.

    python bench/rolling_upgrade.py                  # the roll and the baseline, 60 tasks each
    python bench/rolling_upgrade.py --tasks 100 --rate 2 --json /tmp/roll.json

The system as separate processes (tests/support/rolling_upgrade.py): redis-server, two API gunicorns (two
workers each) behind a client-side pool of endpoints standing in for the Service, two Celery workers
standing for two of the chart's worker groups (workspace and deploy; events and coordination; concurrency 2),
two watchers (the leader and a standby), the local runner with an agent that
counts its own starts and takes 3 s, caps of 1000, the fault suites' recovery settings (a reconcile every
second). Submissions stream at `--rate` a second over two services until `--tasks` were accepted. Once a
tenth were accepted, every process is replaced as the chart's Deployments roll (their strategy, the API's
preStop pause and the grace periods read from the rendered chart; waited at most 60 s): with a surge, the
new one started and ready first, the old one out of the endpoints (reaching the clients 1 s later; one
stale-routed submission is sent to it half-way through), SIGTERM to its main process. The two workers (two
worker groups' Deployments) roll together, as helm rolls every Deployment at once, each SIGTERMed while
paused 30 s inside a step (one after its local agent started and before that was recorded, one inside
finish_run), so their warm shutdown has a step to finish. Rows:

- roll: the upgrade; "settled" is from the roll's start to the end of the last accepted task;
- none: the same stream with nothing replaced, timed from the same moment (the backlog itself).

"lost": accepted tasks not ended within 5 minutes; "twice": tasks whose agent started more than once;
"killed": old processes still alive after their grace period; "non-202": answers other than 202
(connection errors count as 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.rolling_upgrade import RollingUpgrade  # noqa: E402

PAUSES = {"worker-a": "local-agent.between", "worker-b": "finish_run"}
SETTLE_SECONDS = 300.0


def run(name: str, tasks: int, rate: float, keep: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"rolling-upgrade-{name}-", dir=keep))
    load = RollingUpgrade(tmp, tasks=tasks, rate=rate, tasks_before=max(1, tasks // 10), pauses=PAUSES,
                          grace_cap_seconds=60.0)
    started = time.monotonic()
    try:
        load.up()
        result = load.run(settle_timeout=SETTLE_SECONDS, roll=name == "roll")
    finally:
        load.down()
    row = {"scenario": name, **asdict(result), "wall_seconds": time.monotonic() - started,
           "logs": str(tmp / "stack" / "logs")}
    row["answers"] = {str(k): v for k, v in result.answers.items()}
    print(f"{name:6} {result.summary()}", flush=True)
    for line in result.replaced:
        print(f"       {line}", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--rate", type=float, default=2.0, help="submissions a second")
    parser.add_argument("--scenario", action="append", choices=("roll", "none"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="directory for the runs' files (logs), kept")
    args = parser.parse_args()
    rows = [run(name, args.tasks, args.rate, args.keep) for name in args.scenario or ("roll", "none")]
    print()
    print("| scenario | accepted | non-202 | settled after the roll's start | roll | lost | run twice | killed | "
          "standby took the lease | steps ended inside a warm shutdown |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        seconds = row["settle_seconds"]
        settled = f"not within {SETTLE_SECONDS:.0f} s" if seconds is None else f"{seconds:.1f} s"
        other = sum(v for k, v in row["answers"].items() if k != "202")
        roll = f"{row['roll_seconds']:.1f} s" if row["scenario"] == "roll" else "-"
        standby = ("yes" if row["standby_took_lease"] else "**no**") if row["scenario"] == "roll" else "-"
        print(f"| {row['scenario']} | {row['accepted']} | {other} | {settled} | {roll} | {len(row['lost'])} | "
              f"{len(row['twice'])} | {len(row['killed'])} | {standby} | {len(row['finished_in_shutdown'])} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0 if all(not r["lost"] and not r["twice"] and not r["killed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
