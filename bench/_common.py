"""What the HTTP benchmarks share: gunicorn start/stop, a load generator, CPU and percentiles.

The load generator is closed-loop: `processes` x `threads` connections, each
sending its next request as soon as the previous answer arrived, for a fixed
time after a warm-up. Several processes, because one Python process cannot
send faster than its GIL allows and would measure itself instead of the
server. It runs on the same machine as the server, so both share its cores.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import free_port  # noqa: E402

# make(seq, process, thread) -> (body, headers): a module-level function (sent to the generator processes).
RequestMaker = Callable[[int, int, int], tuple[bytes, dict[str, str]]]


def serve(app: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    """`gunicorn -c python:api.gunicorn_conf <app>` on a free port, once it answers GET /health."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", app],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}, cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            conn.getresponse().read()
            conn.close()
            return process, port
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"gunicorn for {app} exited; see {log}") from None
            time.sleep(0.1)
    stop(process)
    raise SystemExit(f"gunicorn for {app} did not answer; see {log}")


def stop(process: subprocess.Popen) -> None:
    """Stop a gunicorn started by `serve` (its whole process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cpu_seconds(root: int) -> float:
    """User+system CPU of a process and its children (gunicorn's workers), from /proc."""
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
    """The q-quantile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _connection_loop(port: int, path: str, make: RequestMaker, proc: int, thread: int, keepalive: bool,
                     ok: tuple[int, ...], warm_until: float, stop_at: float, out: dict[str, Any]) -> None:
    conn: http.client.HTTPConnection | None = None
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    seq = 0
    while time.perf_counter() < stop_at:
        seq += 1
        body, headers = make(seq, proc, thread)
        started = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            if not keepalive:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn, status = None, 0
        if started >= warm_until:
            statuses[status] = statuses.get(status, 0) + 1
            if status in ok:
                latencies.append(time.perf_counter() - started)
    if conn is not None:
        conn.close()
    with out["lock"]:
        out["latencies"] += latencies
        for status, n in statuses.items():
            out["statuses"][status] = out["statuses"].get(status, 0) + n


def _generator(port: int, path: str, make: RequestMaker, proc: int, threads: int, keepalive: bool,
               ok: tuple[int, ...], start_at: float, warmup: float, seconds: float, results: Any) -> None:
    while time.time() < start_at:
        time.sleep(0.005)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"lock": threading.Lock(), "latencies": [], "statuses": {}}
    pool = [threading.Thread(target=_connection_loop, args=(port, path, make, proc, i, keepalive, ok,
                                                            t0 + warmup, t0 + warmup + seconds, out))
            for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((out["latencies"], out["statuses"]))


def drive(port: int, path: str, make: RequestMaker, *, connections: int, processes: int, warmup: float,
          seconds: float, keepalive: bool = True, ok: tuple[int, ...] = (200, 202),
          server_pid: int | None = None) -> dict[str, Any]:
    """POST to `path` from `connections` closed-loop connections; throughput, latency and server CPU.

    Only answers with a status in `ok` count as done; any other is counted in
    `errors`. With `server_pid`, the server's CPU per request over the measured
    window is returned too (the throughput ratio a server would see if the
    load generator did not share its cores).
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    start_at = time.time() + 2.0  # every generator process starts at the same moment, imports done
    procs = [ctx.Process(target=_generator, args=(port, path, make, i, n, keepalive, ok, start_at, warmup,
                                                  seconds, results))
             for i, n in enumerate(per) if n]
    for p in procs:
        p.start()
    cpu_before = None
    if server_pid is not None:
        time.sleep(max(0.0, start_at + warmup - time.time()))
        cpu_before = cpu_seconds(server_pid)
        time.sleep(seconds)
        cpu_after = cpu_seconds(server_pid)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for _ in procs:
        lat, st = results.get(timeout=seconds + warmup + 120)
        latencies += lat
        for status, n in st.items():
            statuses[status] = statuses.get(status, 0) + n
    for p in procs:
        p.join()
    figures: dict[str, Any] = {
        "requests": len(latencies), "errors": sum(n for s, n in statuses.items() if s not in ok),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "rps": len(latencies) / seconds, "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000, "max_ms": max(latencies, default=float("nan")) * 1000,
    }
    if cpu_before is not None and latencies:
        figures["server_cpu_ms"] = (cpu_after - cpu_before) / len(latencies) * 1000
    return figures
