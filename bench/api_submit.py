"""Benchmark: POST /api/v1/pm/tasks under gunicorn against a bare Flask endpoint doing one LPUSH.

    python -m bench.api_submit [--seconds 10] [--connections 32] [--processes 4]

Both servers run with the same gunicorn config (api/gunicorn_conf.py) against
the same Redis (a redis-server of the benchmark's own), one after the other in
the same run. The load generator is Python (processes x threads, one
keep-alive http.client connection per thread) on the same machine, so both
sides share its cores. Prints throughput, p50/p99 latency and the ratios.
Target: real/bare throughput >= 0.7 and p99 real/bare <= 1.5.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def bare_app() -> Any:
    """The baseline: a bare Flask endpoint doing one Redis LPUSH (gunicorn factory)."""
    import redis
    from flask import Flask, request

    app = Flask("bare")
    client = redis.Redis.from_url(os.environ["ORCHESTRATOR_REDIS_URL"])

    @app.post("/bare")
    def bare() -> tuple[dict[str, bool], int]:
        """Store the body in one list."""
        client.lpush("bench:bare", request.get_data())
        return {"ok": True}, 202

    return app


def task_body(service: str, task_id: int) -> bytes:
    """A realistic submission: a task with one markdown file and a repository."""
    return json.dumps({
        "id": task_id, "title": f"Benchmark task {task_id}", "description": "Measure the submit path.",
        "details": "Nothing to do.", "test_strategy": "None.", "priority": "medium", "status": "pending",
        "dependencies": [], "subtasks": [{"id": 1, "title": "only"}],
        "service_name": service, "agent_name": "claude",
        "markdown_files": [{"filename": "task.md", "content": "# Task\n" + "text " * 100, "file_type": "task"}],
        "repository": {"url": "https://github.com/acme/bench.git", "branch": "main"},
        "env": {"LOG_LEVEL": "info"},
    }).encode()


def _connection_loop(port: int, path: str, service: str, stop_at: float, warm_until: float,
                     latencies: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    task_id = 0
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        task_id += 1
        body = task_body(service, task_id)
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = 0
        elapsed = time.perf_counter() - started
        if started >= warm_until:
            if status == 202:
                latencies.append(elapsed)
            else:
                errors.append(status)
    conn.close()


def _generator_process(port: int, path: str, proc: int, threads: int, warmup: float, seconds: float,
                       start_at: float, results: Any) -> None:
    while time.time() < start_at:
        time.sleep(0.005)
    t0 = time.perf_counter()
    warm_until, stop_at = t0 + warmup, t0 + warmup + seconds
    latencies: list[float] = []
    errors: list[int] = []
    workers = [threading.Thread(target=_connection_loop,
                                args=(port, path, f"bench-p{proc}-t{i}", stop_at, warm_until, latencies, errors))
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.put((latencies, errors))


def load(port: int, path: str, *, connections: int, processes: int, warmup: float, seconds: float) -> dict[str, Any]:
    """Drive `path` with `connections` keep-alive connections; return throughput and latency figures."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    start_at = time.time() + 1.5  # every process starts at the same moment
    procs = [ctx.Process(target=_generator_process, args=(port, path, i, n, warmup, seconds, start_at, results))
             for i, n in enumerate(per)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors: list[int] = []
    for _ in procs:
        lat, err = results.get(timeout=seconds + warmup + 120)
        latencies += lat
        errors += err
    for p in procs:
        p.join()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(latencies), "errors": len(errors), "rps": len(latencies) / seconds,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(app: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", app],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            conn.getresponse().read()
            conn.close()
            break
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"gunicorn for {app} exited; see {log}")
            time.sleep(0.1)
    else:
        process.terminate()
        raise SystemExit(f"gunicorn for {app} did not answer; see {log}")
    return process, port


def main(argv: list[str] | None = None) -> None:  # noqa: C901
    """Run both servers in turn and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "PROMETHEUS_"))}
    env.update({"ORCHESTRATOR_REDIS_URL": redis_server.url, "ORCHESTRATOR_API_TOKENS": TOKEN,
                "ORCHESTRATOR_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT)})
    figures: dict[str, dict[str, Any]] = {}
    try:
        for name, app, path in (("bare LPUSH", "bench.api_submit:bare_app()", "/bare"),
                                ("POST /api/v1/pm/tasks", "api.wsgi:app", "/api/v1/pm/tasks")):
            process, port = _serve(app, env, workdir / f"{name.split()[0]}.log")
            try:
                figures[name] = load(port, path, connections=args.connections, processes=args.processes,
                                     warmup=args.warmup, seconds=args.seconds)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        redis_server.stop()

    workers = env.get("GUNICORN_WORKERS") or "config default"
    print(f"gunicorn -c python:api.gunicorn_conf (workers: {workers}), {os.cpu_count()} cores, "
          f"{args.connections} connections ({args.processes} generator processes), {args.seconds:g}s each")
    print(f"{'endpoint':<24}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, f in figures.items():
        print(f"{name:<24}{f['requests']:>10}{f['errors']:>8}{f['rps']:>10.0f}{f['p50_ms']:>9.1f}{f['p99_ms']:>9.1f}")
    bare, real = figures["bare LPUSH"], figures["POST /api/v1/pm/tasks"]
    ratio = real["rps"] / bare["rps"] if bare["rps"] else float("nan")
    p99_ratio = real["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] else float("nan")
    print(f"throughput ratio (real/bare): {ratio:.2f} (target >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'})")
    print(f"p99 ratio (real/bare): {p99_ratio:.2f} (target <= 1.50: {'met' if p99_ratio <= 1.5 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({"ours": real, "bare": bare, "ratio": ratio, "p99_ratio": p99_ratio,
                                         "connections": args.connections, "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
