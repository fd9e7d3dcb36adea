"""Benchmark: Redis memory per task, and that it stays flat over a soak of submissions and expiries.

    python bench/retention.py [--days 60] [--per-day 2000] [--retention 7] [--json out.json]

A redis-server of the benchmark's own. Each simulated day submits `--per-day`
tasks through the store (each with a run, a context document and a full
status history up to Succeeded or Failed, as a real task leaves them), then
runs the watcher's retention pass (`coordination.retention.expire_ended`)
with that day as "now". Once `--retention` days have filled, the store should
hold about `retention x per-day` tasks and its memory should stop growing:
the figures are Redis's `used_memory` per day, memory per stored task, and
the growth over the second half of the soak (target: flat, under 5%).
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

from orchestrator.coordination.retention import expire_ended  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.states import Status  # noqa: E402
from orchestrator.store import TaskStore, connect  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

DAY = 86400.0
SPEC = {
    "title": "Add rate limiting to the public API",
    "description": "Requests above the limit get 429 with Retry-After.",
    "details": "Token bucket per API key, limits from settings. " * 8,
    "testStrategy": "Burst 200 requests; the 101st gets 429.",
}
PATH = (Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING)


def submit_day(store: TaskStore, day: int, per_day: int, start: float) -> None:
    at = start + day * DAY
    for n in range(per_day):
        service, task_id = f"svc-{n % 50}", day * per_day + n + 1
        store.create_task(service=service, task_id=task_id, agent="claude", spec=SPEC, now=at)
        store.create_run(service, task_id, version=1, attempt=1, now=at)
        store.add_context(service, task_id, {"title": "review", "body": "Please also log refusals."})
        for status in PATH:
            store.transition(service, task_id, status, reason=status.value.lower(), actor="bench", now=at)
        end = Status.FAILED if n % 10 == 0 else Status.SUCCEEDED
        store.transition(service, task_id, end, reason="ended", actor="bench", now=at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--retention", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            client = connect(server.url)
            store = TaskStore(client, history_limit=50)
            settings = Settings.from_env({"ORCHESTRATOR_REDIS_URL": server.url}).replace(
                retention_days=args.retention
            )
            start = time.time() - (args.days + 1) * DAY
            empty = int(client.info("memory")["used_memory"])
            days: list[dict[str, float]] = []
            purge_seconds: list[float] = []
            for day in range(args.days):
                submit_day(store, day, args.per_day, start)
                began = time.perf_counter()
                purged = expire_ended(store, settings, now=start + (day + 1) * DAY)
                purge_seconds.append(time.perf_counter() - began)
                stored = int(client.zcard("orch:idx:all"))
                used = int(client.info("memory")["used_memory"])
                days.append({"day": day + 1, "stored": stored, "purged": len(purged), "used_mb": used / 2**20})
                print(f"day {day + 1:3d}: {stored:7d} tasks stored, {len(purged):6d} deleted, "
                      f"{used / 2**20:8.1f} MB used", flush=True)
            half = days[len(days) // 2 :]
            growth = (half[-1]["used_mb"] - half[0]["used_mb"]) / half[0]["used_mb"] if half[0]["used_mb"] else 0.0
            last = days[-1]
            per_task = (last["used_mb"] * 2**20 - empty) / max(1, last["stored"])
            figures = {
                "days": args.days,
                "per_day": args.per_day,
                "retention_days": args.retention,
                "stored_at_end": last["stored"],
                "submitted": args.days * args.per_day,
                "bytes_per_task": round(per_task),
                "used_mb_at_end": round(last["used_mb"], 1),
                "growth_second_half": round(growth, 4),
                "purge_seconds_max": round(max(purge_seconds), 3),
                "series": days,
            }
            print(f"\n{figures['submitted']} submitted over {args.days} days, {last['stored']} stored at the end "
                  f"(retention {args.retention} days); {per_task / 1024:.1f} KiB of Redis memory per stored task; "
                  f"growth over the second half {growth:+.1%} (target: flat, within 5%); "
                  f"longest retention pass {max(purge_seconds):.2f} s")
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
