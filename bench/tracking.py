"""Benchmark: what tracking costs with 10, 100, 1,000 and 10,000 concurrent runs.

    python bench/tracking.py [--counts 10,100,1000,10000] [--window 20] [--reconcile 5] [--json out.json]

For each count, a throw-away redis-server holds that many tasks in Launching,
each with its launched run, and the Kubernetes API emulator
(tests/support/kube_emulator.py, served over HTTP from a process of its own)
holds their Jobs and running pods. Then:

  * the real watcher (`python -m orchestrator.cli watch`, a process of its own)
    adopts them all (Launching -> Running; "adopt s" is from its start until
    the store shows every task Running), and from two seconds later runs
    for `--window` seconds; every request it makes to the emulator in that
    window is counted (lists, watches, gets: the emulator records each one) and
    scaled to requests per minute. Its resident memory (VmRSS sampled every
    half second, and the peak VmHWM) and the CPU time it used in the window
    (utime + stime) are read from /proc;
  * then that process is stopped and, in this process, three reconciles of the
    same runs are timed and counted alone: requests per reconcile (the most of
    the three) and seconds per reconcile (the median). The emulator's work of
    serving the lists is in those seconds, the watcher's CPU figure is not.

The emulator runs in its own process so that what is timed is the watcher and
the emulator, not the emulator waiting for this process's interpreter lock:
served from here, it shared one with the timed reconcile and with its own
request threads.

Reading the figures. The watcher lists Jobs and pods once per
ORCHESTRATOR_RECONCILE_SECONDS (`--reconcile`) and otherwise only renews its
two watches, so requests per minute are 2 x 60 / period plus watch renewals,
whatever the number of runs, as long as a reconcile takes less than the period.
One that takes longer is followed at once by the next, and requests per minute
then fall as runs grow: a falling figure means a slow reconcile (see its
seconds), not a cheaper watcher. Requests per reconcile should be 2 at every size.

Targets: requests per minute flat in the number of runs; watcher memory under
200 MB at 10,000 runs. `--reconcile` defaults to 5 s here (30 s in production)
so that a short window sees several reconciles.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator import runs  # noqa: E402
from orchestrator.kube import jobs  # noqa: E402
from orchestrator.kube.client import KubeClient  # noqa: E402
from orchestrator.runners.kubernetes import KubernetesRunner  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.states import Status  # noqa: E402
from orchestrator.store import TaskStore, connect  # noqa: E402
from orchestrator.watcher import Watcher  # noqa: E402
from tests.support.kube_emulator import KubeEmulator, kubeconfig_for  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.runs import Sent, launching_task  # noqa: E402



def _serve_emulator(conn: Connection) -> None:
    """The emulator's process: serve it over HTTP; fill it and report its requests when asked on `conn`."""
    emulator = KubeEmulator()
    conn.send(emulator.start())
    while True:
        command, arg = conn.recv()
        if command == "fill":  # Jobs as built by the runner: create each with one running pod
            for body in arg:
                emulator.put("jobs", body)
                emulator.start_pod(body["metadata"]["name"], suffix="p")
            conn.send(None)
        elif command == "requests":  # (method, path, watch?, arrival time) of every request from index `arg`
            conn.send([(r.method, r.path, bool(r.query.get("watch")), r.at) for r in list(emulator.requests)[arg:]])
        elif command == "count":
            conn.send(len(emulator.requests))
        elif command == "stop":
            emulator.stop()
            conn.send(None)
            return


class EmulatorProcess:
    """The Kubernetes API emulator served from a process of its own.

    Served from this process, the emulator shared one interpreter lock with
    the bench's own reconcile and with its own threads copying ten thousand
    Jobs: the watcher's requests waited for the bench, not for the watcher.
    Every request is still recorded, by the emulator, as before.
    """

    def __init__(self) -> None:
        self.conn, child = multiprocessing.get_context("spawn").Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=_serve_emulator, args=(child,), name="kube-emulator", daemon=True)
        self.process.start()
        self.url: str = self.conn.recv()

    def _ask(self, command: str, arg: Any = None) -> Any:
        self.conn.send((command, arg))
        return self.conn.recv()

    def fill(self, bodies: list[dict[str, Any]]) -> None:
        self._ask("fill", bodies)

    def requests(self, since: int = 0) -> list[tuple[str, str, bool, float]]:
        return self._ask("requests", since)

    def request_count(self) -> int:
        return self._ask("count")

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._ask("stop")
            except (EOFError, OSError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def fill(store: TaskStore, settings: Settings, emulator: EmulatorProcess, count: int) -> None:
    """`count` launched runs with a Job and a running pod each (the Job controller's part done directly)."""
    bodies: list[dict[str, Any]] = []
    for task_id in range(1, count + 1):
        run_id = launching_task(store, "svc", task_id)
        task, run = store.require_task("svc", task_id), store.get_run(run_id)
        body = jobs.build_job(runs.build_request(settings, task, run), settings)
        body.setdefault("metadata", {})["namespace"] = "default"
        bodies.append(body)
        store.update_run(run_id, job_name=body["metadata"]["name"], runner="kubernetes", launched_at=time.time(),
                         phase="Launched")
        if len(bodies) == 500:
            emulator.fill(bodies)
            bodies = []
    emulator.fill(bodies)


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(workdir: Path, count: int, window: float, reconcile: float) -> dict[str, Any]:
    """Fill, run the watcher process for `window` seconds, then time reconciles in this process."""
    server = RedisServer(workdir / f"redis-{count}")
    server.start()
    emulator = EmulatorProcess()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(kubeconfig_for(emulator.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({"ORCHESTRATOR_REDIS_URL": server.url, "ORCHESTRATOR_RUNNER": "kubernetes",
                "KUBECONFIG": str(kubeconfig), "ORCHESTRATOR_RECONCILE_SECONDS": str(reconcile),
                "ORCHESTRATOR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    settings = Settings.from_env(env)
    watcher_proc: subprocess.Popen[bytes] | None = None
    try:
        store = TaskStore(connect(server.url))
        started = time.perf_counter()
        fill(store, settings, emulator, count)
        fill_seconds = time.perf_counter() - started
        log = open(workdir / f"watcher-{count}.log", "wb")
        watcher_proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "watcher"], env=env, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        adopt_started = time.monotonic()
        deadline = adopt_started + 120 + count / 50
        while store.count_by_status().get(Status.RUNNING.value, 0) < count:
            if watcher_proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the watcher did not adopt the runs; see {workdir}/watcher-{count}.log")
            time.sleep(0.2)
        adopt_seconds = time.monotonic() - adopt_started
        time.sleep(min(2.0, reconcile))  # let the first reconcile finish and the watches settle
        before, t0, cpu0 = emulator.request_count(), time.time(), cpu_seconds(watcher_proc.pid)
        rss_max = 0
        while time.time() - t0 < window:
            rss_max = max(rss_max, memory_kb(watcher_proc.pid)[0])
            time.sleep(0.5)
        cpu = cpu_seconds(watcher_proc.pid) - cpu0
        requests = [r for r in emulator.requests(before) if r[3] >= t0]
        rss, hwm = memory_kb(watcher_proc.pid)
        per_minute = len(requests) / window * 60
        kinds: dict[str, int] = {}
        for method, path, watch, _at in requests:
            key = f"{method} {'watch ' if watch else ''}{path.rsplit('/', 1)[-1]}"
            kinds[key] = kinds.get(key, 0) + 1
        # The watcher process lists Jobs once per reconcile, and nothing else lists them.
        reconciles = kinds.get("GET jobs", 0)

        # Reconciles in this process, timed and counted alone: the watcher process is
        # stopped first, so its requests are neither counted here nor compete with these.
        watcher_proc.terminate()
        watcher_proc.wait(timeout=30)
        runner = KubernetesRunner(settings, KubeClient.from_settings(settings))
        watcher = Watcher(store, settings, runner, send=Sent())
        seconds, counted = [], []
        for _ in range(3):
            n0 = emulator.request_count()
            t = time.perf_counter()
            report = watcher.reconcile()
            seconds.append(time.perf_counter() - t)
            counted.append(emulator.request_count() - n0)
        return {"runs": count, "active": report.active, "requests_per_minute": per_minute,
                "requests_in_window": len(requests), "requests_by_kind": kinds, "reconciles_in_window": reconciles,
                "watcher_cpu_seconds_per_minute": cpu / window * 60,
                "requests_per_reconcile": max(counted), "reconcile_seconds": sorted(seconds)[1],
                "rss_mb": max(rss, rss_max) / 1024, "peak_rss_mb": hwm / 1024, "fill_seconds": fill_seconds,
                "adopt_seconds": adopt_seconds}
    finally:
        if watcher_proc is not None and watcher_proc.poll() is None:
            watcher_proc.terminate()
            try:
                watcher_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                watcher_proc.kill()
                watcher_proc.wait()
        emulator.stop()
        server.stop()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure every count; print and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--window", type=float, default=20.0, help="seconds the watcher is observed")
    parser.add_argument("--reconcile", type=float, default=5.0, help="ORCHESTRATOR_RECONCILE_SECONDS")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        print(f"watcher reconcile every {args.reconcile:g}s, observed {args.window:g}s per size")
        print(f"{'runs':>7} {'requests/min':>13} {'per reconcile':>14} {'reconcile s':>12} {'CPU s/min':>10} "
              f"{'RSS MB':>7} {'peak MB':>8} {'adopt s':>8}")
        for count in (int(c) for c in args.counts.split(",")):
            row = measure(Path(tmp), count, args.window, args.reconcile)
            rows.append(row)
            print(f"{count:>7} {row['requests_per_minute']:>13.1f} {row['requests_per_reconcile']:>14} "
                  f"{row['reconcile_seconds']:>12.2f} {row['watcher_cpu_seconds_per_minute']:>10.1f} "
                  f"{row['rss_mb']:>7.1f} {row['peak_rss_mb']:>8.1f} {row['adopt_seconds']:>8.1f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
