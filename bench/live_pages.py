"""Open live pages: the server's CPU per idle page, and whether the API still answers while they are open.

    python bench/live_pages.py [--pages 200] [--tasks-per-page 50] [--idle 30] [--json out.json]

A redis-server of its own and gunicorn (`api.gunicorn_conf`, two workers of
four threads) serving the app. One signed-in client opens `--pages` status
streams (`/console/events`, as the tasks page does: each follows
`--tasks-per-page` tasks), waits until each has sent its first statuses, then
measures the CPU time of gunicorn's processes (master and workers, from /proc)
over `--idle` seconds with nothing changing. Divided by the pages and the
seconds it is what one idle live page costs the server, as a share of one
core. While they are open, GET /health is timed 50 times. Then one status
change per page's tasks is written and the time until every stream has it is
measured.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench._common import ROOT, cpu_seconds, percentile, serve, stop
from orchestrator.store import TaskStore, connect
from tests.support.redis_server import RedisServer
from tests.support.sse import read_until

TOKEN = "bench-live-token"


def sign_in(base: str) -> str:
    session = requests.Session()
    page = session.get(base + "/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    answer = session.post(base + "/sign-in", data={"token": TOKEN, "csrf_token": csrf.group(1)}, allow_redirects=False)
    assert answer.status_code == 303
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--tasks-per-page", type=int, default=50)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    figures: dict[str, Any] = {"pages": args.pages, "tasks_per_page": args.tasks_per_page, "idle_seconds": args.idle}
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        process = None
        streams: list[socket.socket] = []
        try:
            store = TaskStore(connect(server.url))
            tasks = args.pages * args.tasks_per_page
            for n in range(tasks):
                store.create_task(service=f"svc-{n % 50}", task_id=n // 50 + 1, agent="claude", spec={"title": "t"})
            env = {
                "PATH": "/usr/bin:/bin:/usr/local/bin",
                "PYTHONPATH": str(ROOT),
                "ORCHESTRATOR_REDIS_URL": server.url,
                "ORCHESTRATOR_API_TOKENS": TOKEN,
                "ORCHESTRATOR_SESSION_SECRET": "bench-live-secret",
                "ORCHESTRATOR_RUNNER": "local",
                "GUNICORN_WORKERS": "2",
                "GUNICORN_THREADS": "4",
            }
            process, port = serve("api.wsgi:app", env, Path(tmp) / "gunicorn.log")
            cookie = sign_in(f"http://127.0.0.1:{port}")
            began = time.monotonic()
            for page in range(args.pages):
                refs = "&".join(
                    f"task=svc-{n % 50}/{n // 50 + 1}"
                    for n in range(page * args.tasks_per_page, (page + 1) * args.tasks_per_page)
                )
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(f"GET /console/events?{refs} HTTP/1.1\r\nHost: b\r\nCookie: {cookie}\r\n\r\n".encode())
                streams.append(sock)
            opened = [read_until(sock, b'"status":"Pending"', 30) for sock in streams]
            ok = sum(1 for data in opened if data.startswith(b"HTTP/1.1 200 ") and b'"status"' in data)
            figures["streams_open"] = ok
            figures["open_seconds"] = time.monotonic() - began
            print(f"{ok}/{args.pages} live pages open in {figures['open_seconds']:.1f} s", flush=True)

            health: list[float] = []
            for _ in range(50):
                t = time.perf_counter()
                answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
                health.append((time.perf_counter() - t) * 1000)
                assert answer.status_code == 200
            figures["health_p50_ms"], figures["health_max_ms"] = percentile(health, 0.5), max(health)
            print(
                f"GET /health with them open: p50 {figures['health_p50_ms']:.1f} ms, "
                f"max {figures['health_max_ms']:.1f} ms",
                flush=True,
            )

            time.sleep(2)
            cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
            time.sleep(args.idle)
            cpu1, t1 = cpu_seconds(process.pid), time.monotonic()
            share = (cpu1 - cpu0) / (t1 - t0)
            figures["server_cpu_share_idle"] = share
            figures["cpu_share_per_page"] = share / max(1, ok)
            print(
                f"idle for {t1 - t0:.0f} s: the server used {share * 100:.2f}% of a core for {ok} pages, "
                f"{figures['cpu_share_per_page'] * 100:.4f}% of a core per page (target < 1%)",
                flush=True,
            )

            began = time.monotonic()
            for page in range(args.pages):
                n = page * args.tasks_per_page
                store.transition(f"svc-{n % 50}", n // 50 + 1, "Cancelled", reason="bench", actor="bench")
            got = [read_until(sock, b'"status":"Cancelled"', 30) for sock in streams]
            figures["changes_delivered"] = sum(1 for data in got if b'"status":"Cancelled"' in data)
            figures["delivery_seconds"] = time.monotonic() - began
            print(
                f"{figures['changes_delivered']}/{args.pages} pages had their change "
                f"{figures['delivery_seconds']:.2f} s after the first was written",
                flush=True,
            )
        finally:
            for sock in streams:
                sock.close()
            if process is not None:
                stop(process)
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
