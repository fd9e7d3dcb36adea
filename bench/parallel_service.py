"""Benchmark: 20 queued tasks of ONE service, settled per second, by ORCHESTRATOR_MAX_RUNS_PER_SERVICE.

    python bench/parallel_service.py [--tasks 20] [--agent-seconds 2] [--caps 1,4,5,10] [--json out.json]

For each cap: a stack of its own (redis-server, gunicorn, one Celery worker
with 4 threads, the watcher; tests/support/stack.py), the local runner, a
real bare repository (seeded with 200 files of 5 KB so disk figures mean
something) as the tasks' repository (ORCHESTRATOR_ALLOW_LOCAL_REPOS), and an
agent (tests/support/parallel_agent.py) that writes one file, sleeps
`--agent-seconds`, commits, and stamps its start and end. Every task is
delivered (its branch pushed back to the bare repository).

Printed per cap: time from the first submission to the last task settled,
tasks settled per second, speed-up against cap 1, the most agents running at
once (from the agents' own stamps), and the disk use of one more run (one
worktree) beside what a full clone per run would take (the clone's .git plus
a checkout).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.store import TaskStore  # noqa: E402
from orchestrator.store.base import connect  # noqa: E402
from orchestrator.workspace.cleanup import disk_usage  # noqa: E402
from tests.support.git_server import GitHttpServer  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

AGENT = ROOT / "tests" / "support" / "parallel_agent.py"
SERVICE = "bench"
ENDED = {"Succeeded", "Failed", "Cancelled"}


def peak_overlap(records: list[dict[str, Any]]) -> int:
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def one(cap: int, tasks: int, agent_seconds: float, work: Path) -> dict[str, Any]:
    seed = {f"src/module_{i:03d}.py": ("# generated\n" + "x = 1\n" * 800) for i in range(200)}
    seed["README.md"] = "# bench\n"
    bare = GitHttpServer(work / "git", token="unused").create_repository("acme/bench", work / "seed",
                                                                         branches={"main": seed})
    agents = work / "agents"
    env = {"ORCHESTRATOR_RECONCILE_SECONDS": "1", "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": str(cap),
           "ORCHESTRATOR_MAX_ACTIVE_RUNS": "100", "ORCHESTRATOR_ALLOW_LOCAL_REPOS": "true",
           "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"{sys.executable} {AGENT} {agents} {agent_seconds:g}"}
    stack = Stack(work / "stack", env=env)
    try:
        stack.start_redis()
        stack.start_api()
        stack.start_worker("worker0", concurrency=4)
        stack.start_watcher()
        store = TaskStore(connect(stack.redis.url))
        start = time.time()
        for n in range(1, tasks + 1):
            status, body = stack.request("POST", "/api/v1/pm/tasks", {
                "id": n, "title": f"Task {n}", "description": "notes", "details": "", "test_strategy": "",
                "priority": "medium", "dependencies": [], "service_name": SERVICE, "agent_name": "claude",
                "repository": {"url": str(bare), "branch": "main"},
                "markdown_files": [{"filename": "task.md", "content": f"# Task {n}\n", "file_type": "task"}]})
            if status != 202:
                raise SystemExit(f"submission refused: {body}")
        settled: dict[int, float] = {}
        deadline = time.monotonic() + 60 + tasks * (agent_seconds + 5)
        while len(settled) < tasks:
            if time.monotonic() > deadline:
                raise SystemExit(f"cap {cap}: only {len(settled)} of {tasks} settled\n{stack.dump_logs()}")
            for n in range(1, tasks + 1):
                if n not in settled:
                    task = store.get_task(SERVICE, n)
                    status = task["status"] if isinstance(task, dict) else getattr(task, "status", "")
                    if str(status) in ENDED:
                        settled[n] = time.time()
            time.sleep(0.05)
        elapsed = max(settled.values()) - start
        failed = [n for n in settled if str((lambda t: t["status"] if isinstance(t, dict) else t.status)(
            store.get_task(SERVICE, n))) != "Succeeded"]
        records = [json.loads(p.read_text()) for p in agents.glob("*.json")]
        service_dir = Path(stack.env["ORCHESTRATOR_WORKSPACE_ROOT"]) / SERVICE
        trees = [p for p in (service_dir / "worktrees").iterdir() if p.is_dir()]
        per_worktree = sum(disk_usage(t) for t in trees) / max(1, len(trees))
        clone_git = disk_usage(service_dir / ".clone" / ".git")
        return {"cap": cap, "tasks": tasks, "failed": failed, "seconds": round(elapsed, 2),
                "settled_per_second": round(tasks / elapsed, 3), "peak_agents": peak_overlap(records),
                "disk_per_extra_run_bytes": int(per_worktree),
                "full_clone_per_run_bytes": int(clone_git + per_worktree),
                "shared_clone_git_bytes": clone_git}
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--agent-seconds", type=float, default=2.0)
    parser.add_argument("--caps", default="1,4,5,10")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for cap in [int(c) for c in args.caps.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"bench-parallel-{cap}-") as tmp:
            result = one(cap, args.tasks, args.agent_seconds, Path(tmp))
        results.append(result)
        base = results[0]["seconds"]
        print(f"cap {cap:>2}: {args.tasks} tasks settled in {result['seconds']:6.2f} s = "
              f"{result['settled_per_second']:.2f} tasks/s, x{base / result['seconds']:.2f} vs cap "
              f"{results[0]['cap']}, at most {result['peak_agents']} agents at once, failed {result['failed']}; "
              f"disk per extra run {result['disk_per_extra_run_bytes'] / 1024:.0f} KiB "
              f"(a full clone per run: {result['full_clone_per_run_bytes'] / 1024:.0f} KiB)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
