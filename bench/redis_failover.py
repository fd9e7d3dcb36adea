"""Redis failover recovery: kill -9 of the Sentinel-managed master under submissions and webhooks.

    python bench/redis_failover.py                 # one round
    python bench/redis_failover.py --rounds 3      # the median and the worst of three

Each round starts a master, its replica and three Sentinels (down after 1 s,
quorum 2), the API under gunicorn, one Celery worker (concurrency 2) and the
watcher, all real processes configured with ORCHESTRATOR_REDIS_SENTINELS.
Submissions and signed `issues` webhooks alternate every 0.2 s. After the
warm-up the master is killed with SIGKILL; the traffic goes on until the API
has accepted again for `--after` seconds. Printed, from the kill:

- promoted: until every Sentinel names the replica;
- first 202: until the API accepted a submission or webhook again (in between
  it answers 503; any other status is counted as `other`);
- settled: until every accepted submission had ended (Succeeded once) and
  every accepted delivery had become its task;
- lost: accepted (202) and not found on the new master; run twice: a task
  with more than one run or more than one move to Succeeded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.store.keys import delivery_key, task_key  # noqa: E402
from orchestrator.validation import ISSUE_TASK_ID_OFFSET  # noqa: E402
from tests.support.failover import HOOK_SERVICE, ClusterHandle, Traffic  # noqa: E402
from tests.support.faults import FaultStack, succeeded_count  # noqa: E402
from tests.support.redis_sentinel import SentinelCluster  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402

END_STATES = {"Succeeded", "Failed", "Cancelled"}


def one_round(tmp: Path, warmup: float, after: float) -> dict[str, Any]:
    cluster = SentinelCluster(tmp / "redis").start()
    env = {**cluster.env(), "ORCHESTRATOR_GITHUB_REPOSITORIES": f"acme/shop={HOOK_SERVICE}",
           "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "2", "ORCHESTRATOR_LOG_LEVEL": "INFO"}
    stack = FaultStack(tmp, env=env, redis=ClusterHandle(cluster))
    try:
        stack.up()
        traffic = Traffic(stack)
        traffic.thread.start()
        try:
            time.sleep(warmup)
            old = cluster.kill_master()
            killed = time.monotonic()
            new = cluster.wait_failover(old, timeout=60)
            promoted = time.monotonic() - killed
            wait_for(lambda: traffic.accepted("task", killed) or traffic.accepted("webhook", killed),
                     "a 202 after the failover", timeout=60, interval=0.02)
            back = min(a.at for a in traffic.accepted("task", killed) + traffic.accepted("webhook", killed))
            time.sleep(after)
        finally:
            traffic.stop.set()
            traffic.thread.join(timeout=30)
        client = new.client()
        tasks = traffic.accepted("task")
        hooks = traffic.accepted("webhook")
        lost = [a.ref for a in tasks if not client.exists(task_key(traffic.service(a.ref), a.ref))]
        lost += [a.ref for a in hooks if not client.exists(delivery_key(f"delivery-{a.ref}"))
                 and not client.exists(task_key(HOOK_SERVICE, a.ref))]
        twice = 0
        deadline = time.monotonic() + 180
        pending = {a.ref for a in tasks}
        while pending and time.monotonic() < deadline:
            for ref in sorted(pending):
                status, body = stack.request("GET", f"/api/v1/pm/tasks/{traffic.service(ref)}/{ref}", timeout=5)
                if status == 200 and body["status"] in END_STATES:
                    pending.discard(ref)
                    twice += int(succeeded_count(body) > 1 or len(body["runs"]) > 1)
            time.sleep(0.2)
        waiting = {ISSUE_TASK_ID_OFFSET + a.ref for a in hooks}  # the tasks made from the issues
        while waiting and time.monotonic() < deadline:
            waiting = {ref for ref in waiting
                       if stack.request("GET", f"/api/v1/pm/tasks/{HOOK_SERVICE}/{ref}", timeout=5)[0] != 200}
            time.sleep(0.2)
        settled = time.monotonic() - killed
        stuck = {f"{traffic.service(ref)}/{ref}": stack.request("GET", f"/api/v1/pm/tasks/{traffic.service(ref)}/{ref}")[1]
                 for ref in sorted(pending)}
        stuck.update({f"delivery-{ref}": None for ref in sorted(waiting)})
        if stuck:
            print("not settled:", json.dumps({k: v and {"status": v.get("status"), "reason": v.get("status_reason")}
                                              for k, v in stuck.items()}), flush=True)
        statuses = [a.status for a in traffic.answers]
        return {
            "promoted_s": promoted, "first_202_s": back - killed, "settled_s": settled,
            "accepted_tasks": len(tasks), "accepted_webhooks": len(hooks),
            "refused_503": statuses.count(503), "other": len([s for s in statuses if s not in (202, 503)]),
            "lost": len(lost), "unsettled": len(pending) + len(waiting), "run_twice": twice,
            "unsettled_refs": sorted(stuck),
        }
    finally:
        stack.down()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of traffic before the kill")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of traffic after the first 202")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/run_all.py)")
    parser.add_argument("--keep", type=Path, help="keep each round's logs and data under this directory")
    args = parser.parse_args(argv)
    rounds = []
    for n in range(args.rounds):
        if args.keep:
            figures = one_round(args.keep / f"round-{n + 1}", args.warmup, args.after)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
                figures = one_round(Path(tmp), args.warmup, args.after)
        rounds.append(figures)
        print(f"round {n + 1}: promoted {figures['promoted_s']:.2f} s, first 202 {figures['first_202_s']:.2f} s, "
              f"settled {figures['settled_s']:.1f} s; accepted {figures['accepted_tasks']} submissions and "
              f"{figures['accepted_webhooks']} webhooks, 503 {figures['refused_503']}, other {figures['other']}, "
              f"lost {figures['lost']}, unsettled {figures['unsettled']}, run twice {figures['run_twice']}",
              flush=True)
    summary = {
        "rounds": rounds,
        "first_202_median_s": statistics.median(r["first_202_s"] for r in rounds),
        "first_202_max_s": max(r["first_202_s"] for r in rounds),
        "settled_max_s": max(r["settled_s"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds), "run_twice": sum(r["run_twice"] for r in rounds),
        "other": sum(r["other"] for r in rounds), "unsettled": sum(r["unsettled"] for r in rounds),
    }
    print(f"failover: first 202 after kill -9 median {summary['first_202_median_s']:.2f} s, "
          f"max {summary['first_202_max_s']:.2f} s; settled within {summary['settled_max_s']:.1f} s; "
          f"lost {summary['lost']}, run twice {summary['run_twice']}, non-503 errors {summary['other']}")
    if args.json:
        args.json.write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
