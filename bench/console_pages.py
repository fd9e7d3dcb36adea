"""The console's tasks page and the API's list at scale: latency per page kind, and server memory against tasks stored.

    python bench/console_pages.py [--tasks 100000] [--small 1000] [--services 50] [--requests 200] [--json out.json]

A redis-server of its own is filled with `--small` tasks, then with `--tasks`
(over `--services` services, 2 KB of documents each, statuses spread by
transitions through the store's own script: Failed, Cancelled, Queued and
Pending). At each size a fresh gunicorn (`api.gunicorn_conf`, two workers)
serves the app against it; one client signed in to the console requests, one
after the other, `--requests` times each:

- the first page of the tasks page (`/`, 20 rows, the list's default) and of the API (`/api/v1/pm/tasks`);
- a filtered page (`/?service=svc-7&status=Cancelled`), and one filtered by
  agent, and a title search (`/?q=needle`, a word in one task in 1,000);
- a deep cursor: the page 99% of the way down (`/?cursor=<seq of the task 1% from the oldest>`).

Latency is measured at the client (loopback, the same two cores), and the
server's CPU time per request from /proc (gunicorn's processes), which a
loaded machine inflates less than it inflates latency. Memory is
the peak RSS (VmHWM) of gunicorn's workers after every request was served: it
should be the same at both sizes, since a page reads summary fields of its 50
rows only (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench._common import ROOT, cpu_seconds, percentile, serve, stop
from orchestrator.store import TaskStore, connect
from tests.support.redis_server import RedisServer

TOKEN = "bench-console-token"
BODY = "Lorem ipsum dolor sit amet. " * 73  # about 2 KB of documents per task
AGENTS = ("claude", "codex", "aider")


def fill(store: TaskStore, start: int, end: int, services: int) -> None:
    """Tasks start..end-1 (ids per service), spread over services, agents and statuses."""
    for n in range(start, end):
        service, task_id = f"svc-{n % services}", n // services + 1
        title = f"needle in task {n}" if n % 1000 == 7 else f"Task {n}: change the widget"
        store.create_task(
            service=service,
            task_id=task_id,
            agent=AGENTS[n % len(AGENTS)],
            spec={"id": task_id, "title": title, "description": BODY, "details": BODY, "priority": "medium"},
        )
        kind = n % 10
        if kind < 5:
            store.transition(service, task_id, "Failed", reason="the agent exited 1", actor="bench")
        elif kind < 8:
            store.transition(service, task_id, "Cancelled", reason="by a PM", actor="bench")
        elif kind == 8:
            store.transition(service, task_id, "Queued", reason="admitted", actor="bench")


def sign_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(base + "/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, "no CSRF field on the sign-in page"
    answer = session.post(base + "/sign-in", data={"token": TOKEN, "csrf_token": csrf.group(1)}, allow_redirects=False)
    assert answer.status_code == 303, answer.status_code
    return session


def worker_peak_rss(master: int) -> float:
    """Peak RSS (MiB) of the largest gunicorn worker (children of `master`)."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        if ppid == master:
            match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            peak = max(peak, int(match.group(1)) if match else 0)
    return peak / 1024


def measure(redis_url: str, store: TaskStore, requests_each: int, log: Path) -> dict[str, Any]:
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("ORCHESTRATOR_")},
        "PYTHONPATH": str(ROOT),
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_API_TOKENS": TOKEN,
        "ORCHESTRATOR_SESSION_SECRET": "bench-console-secret",
        "ORCHESTRATOR_RUNNER": "local",
        "GUNICORN_WORKERS": "2",
    }
    stored = store.redis.zcard("orch:idx:all")
    deep = store.redis.zrange("orch:idx:all", stored // 100, stored // 100, withscores=True)
    deep_cursor = str(int(deep[0][1])) if deep else ""
    pages = {
        "first page": "/",
        "filtered (service + status)": "/?service=svc-7&status=Cancelled",
        "filtered (agent + status)": "/?agent=codex&status=Queued",
        "title search": "/?q=needle",
        "deep cursor": f"/?cursor={deep_cursor}",
        "API first page": "/api/v1/pm/tasks",
        "API filtered": "/api/v1/pm/tasks?service=svc-7&status=Cancelled",
        "API deep cursor": f"/api/v1/pm/tasks?cursor={deep_cursor}",
    }
    process, port = serve("api.wsgi:app", env, log)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        session = sign_in(base)
        for name, path in pages.items():
            headers = {"Authorization": f"Bearer {TOKEN}"} if path.startswith("/api/") else {}
            for _ in range(5):  # warm: imports, scripts, connections
                session.get(base + path, headers=headers)
            times: list[float] = []
            rows = 0
            cpu_before = cpu_seconds(process.pid)
            for _ in range(requests_each):
                began = time.perf_counter()
                answer = session.get(base + path, headers=headers)
                times.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
                rows = len(answer.json()["items"]) if path.startswith("/api/") else answer.text.count("<tr data-task=")
            out[name] = {
                "server_cpu_ms": (cpu_seconds(process.pid) - cpu_before) / requests_each * 1000,
                "p50_ms": percentile(times, 0.5),
                "p95_ms": percentile(times, 0.95),
                "max_ms": max(times),
                "rows": rows,
            }
            print(
                f"  {name:32} p50 {out[name]['p50_ms']:6.1f} ms  p95 {out[name]['p95_ms']:6.1f} ms  "
                f"max {out[name]['max_ms']:6.1f} ms  "
                f"server CPU {out[name]['server_cpu_ms']:5.1f} ms/request  ({rows} rows)",
                flush=True,
            )
        out["worker_peak_rss_mib"] = worker_peak_rss(process.pid)
        print(f"  worker peak RSS {out['worker_peak_rss_mib']:.1f} MiB", flush=True)
    finally:
        stop(process)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            store = TaskStore(connect(server.url))
            figures: dict[str, Any] = {"tasks": args.tasks, "small": args.small, "services": args.services}
            began = time.monotonic()
            fill(store, 0, args.small, args.services)
            print(f"{args.small:,} tasks stored; pages:", flush=True)
            figures["at_small"] = measure(server.url, store, args.requests, Path(tmp) / "gunicorn-small.log")
            fill(store, args.small, args.tasks, args.services)
            used = store.redis.info("memory")["used_memory"] / 2**20
            print(
                f"{args.tasks:,} tasks stored ({time.monotonic() - began:.0f} s, Redis {used:.0f} MiB); pages:",
                flush=True,
            )
            figures["at_full"] = measure(server.url, store, args.requests, Path(tmp) / "gunicorn-full.log")
            small, full = figures["at_small"], figures["at_full"]
            figures["p95_ms_worst"] = max(v["p95_ms"] for k, v in full.items() if isinstance(v, dict))
            figures["rss_growth_mib"] = full["worker_peak_rss_mib"] - small["worker_peak_rss_mib"]
            print(
                f"worst p95 at {args.tasks:,} tasks: {figures['p95_ms_worst']:.1f} ms (target < 100 ms); "
                f"worker peak RSS {small['worker_peak_rss_mib']:.1f} MiB at {args.small:,} tasks, "
                f"{full['worker_peak_rss_mib']:.1f} MiB at {args.tasks:,}"
            )
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
