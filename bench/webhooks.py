"""Benchmark: signed GitHub deliveries per second accepted by the receiver under gunicorn.

Runs, in the same process tree and against the same fresh redis-server:
  * ours: `gunicorn api.wsgi:app` (verify HMAC, route, claim the delivery, queue via Celery);
  * bare: a Flask endpoint under gunicorn that does one LPUSH of the body.
Each target gets the same routed payload (an issue labelled with the trigger
label), a fresh delivery id per request, from a thread pool using http.client.
Prints requests/s, p50 and p99 latency of both, and the ratios.

    python bench/webhooks.py [--requests 3000] [--threads 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.github.signature import sign  # noqa: E402

SECRET = "bench-secret"
FIXTURES = [ROOT.parent / "shared" / "fixtures" / "github-webhooks", Path("/work/shared/fixtures/github-webhooks")]


def bare_app():
    """The baseline: a Flask endpoint that LPUSHes the raw body (gunicorn factory)."""
    import redis
    from flask import Flask, request

    app = Flask("bare")
    client = redis.Redis.from_url(os.environ["ORCHESTRATOR_REDIS_URL"])

    @app.post("/webhooks/github")
    def receive():
        """Push the body; nothing else."""
        client.lpush("bare", request.get_data())
        return {"status": "queued"}, 202

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_gunicorn(target: str, port: int, env: dict[str, str], workers: int | None) -> subprocess.Popen:
    """`target` under the API's own gunicorn configuration (both targets the same)."""
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    if workers:
        env["GUNICORN_WORKERS"] = str(workers)
    args = [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", target]
    process = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL)
    wait_port(port)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def load(port: int, body: bytes, headers: dict[str, str], total: int, threads: int) -> tuple[float, list[float], int]:
    """Send `total` deliveries from `threads` threads; returns (seconds, latencies, non-2xx count)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        mine: list[float] = []
        bad = 0
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            request_headers = dict(headers, **{"X-GitHub-Delivery": str(uuid.uuid4())})
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/webhooks/github", body=body, headers=request_headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            mine.append(time.perf_counter() - started)
            bad += not (200 <= response.status < 300)
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started, latencies, failures[0]


def cpu_seconds(root: int) -> float:
    """User+system CPU of a process and its children (the gunicorn workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="GUNICORN_WORKERS (default: the config's)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per target; the best is kept")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()

    fixtures = next(p for p in FIXTURES if p.is_dir())
    body = (fixtures / "issues" / "labeled.payload.json").read_bytes()
    headers = {"X-Hub-Signature-256": sign(body, SECRET), "X-GitHub-Event": "issues",
               "Content-Type": "application/json"}

    redis_binary = shutil.which("redis-server")
    if not redis_binary:
        raise SystemExit("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    redis_port = free_port()
    redis_process = subprocess.Popen([redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1",
                                      "--save", "", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    wait_port(redis_port)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({
        "ORCHESTRATOR_REDIS_URL": redis_url, "GITHUB_WEBHOOK_SECRET": SECRET,
        "ORCHESTRATOR_GITHUB_REPOSITORIES": "Codertocat/Hello-World=hello-world",
        "ORCHESTRATOR_GITHUB_TRIGGER_LABEL": "bug", "ORCHESTRATOR_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    })
    servers = {"ours": ("api.wsgi:app", free_port()), "bare": ("bench.webhooks:bare_app()", free_port())}
    processes = []
    try:
        for target, port in servers.values():
            processes.append(start_gunicorn(target, port, env, options.workers))
        results: dict[str, list[tuple[float, list[float], int]]] = {"ours": [], "bare": []}
        cpu: dict[str, list[float]] = {"ours": [], "bare": []}
        masters = {"ours": processes[0].pid, "bare": processes[1].pid}
        for name, (_, port) in servers.items():  # warm up: imports, connections
            load(port, body, headers, min(100, options.requests), options.threads)
        for _ in range(options.rounds):
            for name in ("bare", "ours"):
                subprocess.run(["redis-cli", "-p", str(redis_port), "flushall"], stdout=subprocess.DEVNULL)
                before = cpu_seconds(masters[name])
                results[name].append(load(servers[name][1], body, headers, options.requests, options.threads))
                cpu[name].append((cpu_seconds(masters[name]) - before) / options.requests)
        print(f"payload {len(body)} bytes, {options.requests} deliveries x {options.rounds} rounds, "
              f"{options.threads} client threads, gunicorn workers each: {options.workers or 'config default'}, {os.cpu_count()} cpus")
        summary = {}
        for name, runs in results.items():
            seconds, latencies, failures = min(runs, key=lambda r: r[0])
            rate = len(latencies) / seconds
            summary[name] = (rate, percentile(latencies, 0.5), percentile(latencies, 0.99))
            print(f"{name:5} {rate:8.1f} deliveries/s  p50 {summary[name][1] * 1000:7.2f} ms  "
                  f"p99 {summary[name][2] * 1000:7.2f} ms  non-2xx {failures}  "
                  f"(mean {statistics.mean(latencies) * 1000:.2f} ms)")
        for name in ("ours", "bare"):
            print(f"{name:5} server CPU per delivery {min(cpu[name]) * 1000:.2f} ms (best round)")
        print(f"CPU ratio bare/ours {min(cpu['bare']) / min(cpu['ours']):.2f} "
              "(the throughput ratio when the servers own the CPUs; less noisy on a shared machine)")
        ratio = summary["ours"][0] / summary["bare"][0]
        p99_ratio = summary["ours"][2] / summary["bare"][2]
        print(f"throughput ratio ours/bare {ratio:.2f} (target >= 0.7); p99 ratio {p99_ratio:.2f} (target <= 1.5)")
        if options.json:
            options.json.write_text(json.dumps({
                name: {"rps": rate, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000}
                for name, (rate, p50, p99) in summary.items()} | {
                "ratio": ratio, "p99_ratio": p99_ratio, "cpu_ratio": min(cpu["bare"]) / min(cpu["ours"]),
                "requests": options.requests, "threads": options.threads}, indent=2))
    finally:
        for process in processes:
            stop(process)
        redis_process.terminate()
        redis_process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
