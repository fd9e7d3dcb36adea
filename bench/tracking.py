"""Benchmark: what tracking costs with 10, 100, 1,000 and 10,000 concurrent runs.

    python bench/tracking.py [--counts 10,100,1000,10000] [--window 20] [--reconcile 5] [--json out.json]

For each count, a throw-away redis-server holds that many tasks in Running,
each with its run, and the Kubernetes API emulator (tests/support/kube_emulator.py,
served over HTTP from this process) holds their Jobs and running pods. Then:

  * the real watcher (`python -m orchestrator.cli watch`, a process of its own)
    runs for `--window` seconds after its first reconcile; every request it
    makes to the emulator is counted (lists, watches, gets) and scaled to
    requests per minute, and its resident memory (VmRSS, and the peak VmHWM)
    is read from /proc;
  * in this process, one reconcile of the same runs is timed (requests per
    reconcile and seconds per reconcile).

Targets: requests per minute flat in the number of runs; watcher memory under
200 MB at 10,000 runs. `--reconcile` is ORCHESTRATOR_RECONCILE_SECONDS for the
watcher (default 30 in production; shorter here so a short window sees several).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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



def fill(store: TaskStore, settings: Settings, emulator: KubeEmulator, count: int) -> None:
    """`count` launched runs with a Job and a running pod each (the Job controller's part done directly)."""
    for task_id in range(1, count + 1):
        run_id = launching_task(store, "svc", task_id)
        task, run = store.require_task("svc", task_id), store.get_run(run_id)
        body = jobs.build_job(runs.build_request(settings, task, run), settings)
        body.setdefault("metadata", {})["namespace"] = "default"
        emulator.put("jobs", body)
        name = body["metadata"]["name"]
        emulator.start_pod(name, suffix="p")
        store.update_run(run_id, job_name=name, runner="kubernetes", launched_at=time.time(), phase="Launched")


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def measure(workdir: Path, count: int, window: float, reconcile: float) -> dict[str, Any]:
    """Fill, run the watcher process for `window` seconds, time one in-process reconcile."""
    server = RedisServer(workdir / f"redis-{count}")
    server.start()
    emulator = KubeEmulator()
    url = emulator.start()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(kubeconfig_for(url))
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
        watcher_proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "watch"], env=env, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120 + count / 50
        while store.count_by_status().get(Status.RUNNING.value, 0) < count:
            if watcher_proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the watcher did not adopt the runs; see {workdir}/watcher-{count}.log")
            time.sleep(0.2)
        time.sleep(min(2.0, reconcile))  # let the first reconcile finish and the watches settle
        before, t0 = len(emulator.requests), time.time()
        rss_max = 0
        while time.time() - t0 < window:
            rss_max = max(rss_max, memory_kb(watcher_proc.pid)[0])
            time.sleep(0.5)
        requests = [r for r in list(emulator.requests)[before:] if r.at >= t0]
        rss, hwm = memory_kb(watcher_proc.pid)
        per_minute = len(requests) / window * 60
        kinds: dict[str, int] = {}
        for r in requests:
            key = f"{r.method} {'watch ' if r.query.get('watch') else ''}{r.path.rsplit('/', 1)[-1]}"
            kinds[key] = kinds.get(key, 0) + 1

        # One reconcile in this process, timed.
        runner = KubernetesRunner(settings, KubeClient.from_settings(settings, emulator.api_client()))
        watcher = Watcher(store, settings, runner, send=Sent())
        n0 = len(emulator.requests)
        t = time.perf_counter()
        report = watcher.reconcile()
        reconcile_seconds = time.perf_counter() - t
        return {"runs": count, "active": report.active, "requests_per_minute": per_minute,
                "requests_in_window": len(requests), "requests_by_kind": kinds,
                "requests_per_reconcile": len(emulator.requests) - n0, "reconcile_seconds": reconcile_seconds,
                "rss_mb": max(rss, rss_max) / 1024, "peak_rss_mb": hwm / 1024, "fill_seconds": fill_seconds}
    finally:
        if watcher_proc is not None:
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
        print(f"{'runs':>7} {'requests/min':>13} {'per reconcile':>14} {'reconcile s':>12} {'RSS MB':>7} "
              f"{'peak MB':>8}")
        for count in (int(c) for c in args.counts.split(",")):
            row = measure(Path(tmp), count, args.window, args.reconcile)
            rows.append(row)
            print(f"{count:>7} {row['requests_per_minute']:>13.1f} {row['requests_per_reconcile']:>14} "
                  f"{row['reconcile_seconds']:>12.2f} {row['rss_mb']:>7.1f} {row['peak_rss_mb']:>8.1f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
