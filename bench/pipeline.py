"""Benchmark: submit-to-Job-created latency and the highest sustained rate, beside a bare Celery chain.

    python bench/pipeline.py [--seconds 10] [--rate 20] [--burst 300] [--json out.json]

Kubernetes runner against the Kubernetes API emulator (tests/support/kube_emulator.py,
served over HTTP from this process; it notes the time of every Job create).
Two Celery worker processes (`celery -A workers.app worker -c 1`, every queue)
on a redis-server of the benchmark's own. Tasks are submitted in this process
with `operations.submit_task`, the function POST /api/v1/pm/tasks calls after
validation (the API has its own benchmark), each for its own service so that
neither the per-service limit nor the workspace lease serialises them.

The pipeline up to a created Job is three steps: admit -> prepare_workspace ->
launch_run (which creates the Job). The baseline is a Celery chain of three
no-op steps on the same queues and the same workers (bench/noop_steps.py),
the last of which records the time in Redis.

Phases, for each of the two: a steady `--rate` tasks/s for `--seconds`
(latency p50/p99), then `--bursts` bursts of `--burst` tasks submitted at
once, alternating between the two (the rate at which a burst completes
between the 10th and the 90th percentile is its sustained rate; the median
burst of each side is kept, as one burst moves with the machine's other load).
Target: ours at least half the chain's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import percentile  # noqa: E402
from tests.support.kube_emulator import KubeEmulator, kubeconfig_for  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.stack import Process  # noqa: E402

ALL_QUEUES = "events,coordination,workspace,deploy"


def sustained_rate(finished: list[float]) -> float:
    """Completions per second between the 10th and the 90th percentile of completion times."""
    times = sorted(finished)
    if len(times) < 10:
        return float("nan")
    lo, hi = int(0.1 * len(times)), int(0.9 * len(times))
    span = times[hi] - times[lo]
    return (hi - lo) / span if span > 0 else float("nan")


class Bench:
    """Redis, the emulator and two worker processes; both ways of submitting."""

    def __init__(self, workdir: Path, workers: int):
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis")
        self.emulator = KubeEmulator()
        self.workers = workers
        self.processes: list[Process] = []
        self.seq = 0

    def start(self) -> None:
        self.redis.start()
        url = self.emulator.start()
        kubeconfig = self.workdir / "kubeconfig"
        kubeconfig.write_text(kubeconfig_for(url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        env.update({
            "ORCHESTRATOR_REDIS_URL": self.redis.url, "ORCHESTRATOR_RUNNER": "kubernetes",
            "KUBECONFIG": str(kubeconfig), "ORCHESTRATOR_NAMESPACE": "default",
            "ORCHESTRATOR_WORKSPACE_ROOT": str(self.workdir / "workspaces"),
            "ORCHESTRATOR_DATA_DIR": str(self.workdir / "data"),
            "ORCHESTRATOR_MAX_ACTIVE_RUNS": "1000000", "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "1000",
            "ORCHESTRATOR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
        })
        os.environ.update({k: v for k, v in env.items() if k.startswith("ORCHESTRATOR_") or k == "KUBECONFIG"})
        (self.workdir / "logs").mkdir(exist_ok=True)
        for i in range(self.workers):
            args = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", ALL_QUEUES, "-c", "1",
                    "-n", f"bench{i}-{time.monotonic_ns()}@%h", "--without-gossip", "--without-mingle",
                    "--include", "bench.noop_steps", "-l", "INFO"]
            self.processes.append(Process(f"worker{i}", args, env, self.workdir / "logs").start())
        deadline = time.monotonic() + 90
        for proc in self.processes:
            while " ready." not in proc.log():
                if not proc.alive or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start:\n{proc.log()[-3000:]}")
                time.sleep(0.1)

        from api.tasks import build_schemas
        from orchestrator.settings import get_settings
        from orchestrator.store import TaskStore, connect

        self.settings = get_settings()
        self.store = TaskStore(connect(self.redis.url))
        self.schema = build_schemas(self.settings)["submission"]
        # This process submits as the API does: through a Celery-backed dispatcher of its own.
        from orchestrator import dispatch
        from orchestrator.celery_dispatch import default

        dispatch.install(default())

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.emulator.stop()
        self.redis.stop()

    # Ours -----------------------------------------------------------------------

    def submit_task(self) -> str:
        """Submit one validated task (its own service); returns the service name."""
        from orchestrator import operations

        self.seq += 1
        service = f"bench-{self.seq}"
        spec = self.schema.load({
            "id": 1, "title": "Benchmark", "description": "Nothing to do.", "details": "None.",
            "test_strategy": "None.", "priority": "medium", "dependencies": [],
            "service_name": service, "agent_name": "claude",
            "markdown_files": [{"filename": "task.md", "content": "# Task\n", "file_type": "task"}],
        })
        operations.submit_task(self.store, spec, actor="bench")
        return service

    def jobs_created(self, services: list[str]) -> dict[str, float]:
        """service -> when its Job was created (for the ones that have one).

        Each task's one run has a known Job name (task 1, version 1, attempt 1),
        so this reads only the emulator's record: polling the store for every
        task while the workers run would take the workers' CPU (the chain's
        check is one list read).
        """
        from orchestrator.kube.jobs import job_name

        created = {name: at for kind, name, at in list(self.emulator.created) if kind == "jobs"}
        names = {service: job_name(service, 1, 1, 1) for service in services}
        return {service: created[name] for service, name in names.items() if name in created}

    # The bare chain ---------------------------------------------------------------

    def submit_chain(self) -> str:
        """Send a chain of three no-op steps; returns its token."""
        from celery import chain

        from bench.noop_steps import QUEUES, noop, noop_last

        self.seq += 1
        token = f"chain-{self.seq}"
        links = [noop.si(token).set(queue=QUEUES[0]), noop.si(token).set(queue=QUEUES[1]),
                 noop_last.si(token).set(queue=QUEUES[2])]
        chain(*links).apply_async()
        return token

    def chains_done(self, tokens: list[str]) -> dict[str, float]:
        from bench.noop_steps import DONE_KEY

        done = {}
        for raw in self.store.redis.lrange(DONE_KEY, 0, -1):
            token, _, at = raw.partition(" ")
            done[token] = float(at)
        return {t: done[t] for t in tokens if t in done}


def run_phase(submit: Callable[[], str], finished: Callable[[list[str]], dict[str, float]],
              *, count: int, rate: float | None, timeout: float) -> dict[str, Any]:
    """Submit `count` items at `rate`/s (None: at once); wait for them; latency and rate figures."""
    submitted: dict[str, float] = {}
    t0 = time.time()
    for i in range(count):
        if rate:
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        at = time.time()
        submitted[submit()] = at
    submit_seconds = time.time() - t0
    deadline = time.time() + timeout
    done: dict[str, float] = {}
    while time.time() < deadline:
        done = finished(list(submitted))
        if len(done) == count:
            break
        time.sleep(0.2)
    latencies = [done[k] - submitted[k] for k in done]
    return {"count": count, "completed": len(done), "submit_seconds": submit_seconds,
            "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "rate": sustained_rate(list(done.values())),
            "offered_rate": count / submit_seconds if submit_seconds > 0 else float("nan")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both phases for the pipeline and the bare chain; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady phase")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks/s of the steady phase")
    parser.add_argument("--burst", type=int, default=300, help="tasks submitted at once for the rate")
    parser.add_argument("--bursts", type=int, default=3,
                        help="bursts per side, alternating; the median rate is kept (one burst moves with the machine)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    bench = Bench(workdir, args.workers)
    figures: dict[str, Any] = {"workers": args.workers, "runner": "kubernetes (emulator)", "steps": 3}
    try:
        bench.start()
        steady = int(args.seconds * args.rate)
        timeout = max(60.0, args.seconds * 3)
        # Warm up both (imports, connections, first Job).
        run_phase(bench.submit_task, bench.jobs_created, count=5, rate=None, timeout=60)
        run_phase(bench.submit_chain, bench.chains_done, count=5, rate=None, timeout=60)
        sides = (("chain", bench.submit_chain, bench.chains_done),
                 ("pipeline", bench.submit_task, bench.jobs_created))
        for name, submit, finished in sides:
            figures[name] = {"steady": run_phase(submit, finished, count=steady, rate=args.rate, timeout=timeout),
                             "bursts": []}
        for _ in range(max(1, args.bursts)):
            for name, submit, finished in sides:
                figures[name]["bursts"].append(
                    run_phase(submit, finished, count=args.burst, rate=None, timeout=max(120.0, args.burst)))
        for name, _, _ in sides:
            bursts = sorted(figures[name]["bursts"], key=lambda b: b["rate"] if b["rate"] == b["rate"] else -1.0)
            figures[name]["burst"] = bursts[len(bursts) // 2]  # the median burst
        creates = sum(1 for kind, _, _ in bench.emulator.created if kind == "jobs")
        figures["job_creates"] = creates
        figures["tasks_submitted"] = steady + args.burst * max(1, args.bursts) + 5
    finally:
        bench.stop()

    ours, bare = figures["pipeline"], figures["chain"]
    figures["rate_ratio"] = ours["burst"]["rate"] / bare["burst"]["rate"]
    print(f"{args.workers} worker processes (-c 1), Kubernetes runner against the emulator, "
          f"{os.cpu_count()} cores; steady {args.rate:g}/s for {args.seconds:g}s, {max(1, args.bursts)} bursts of "
          f"{args.burst} each side (median kept)")
    for name in ("pipeline", "chain"):
        print(f"{name} burst rates: " + ", ".join(f"{b['rate']:.1f}" for b in figures[name]["bursts"]))
    print(f"{'':10}{'steady done':>12}{'p50 ms':>9}{'p99 ms':>9}{'burst done':>11}{'sustained/s':>12}")
    for name in ("pipeline", "chain"):
        s, b = figures[name]["steady"], figures[name]["burst"]
        print(f"{name:10}{s['completed']:>8}/{s['count']:<3}{s['p50_ms']:>9.0f}{s['p99_ms']:>9.0f}"
              f"{b['completed']:>7}/{b['count']:<3}{b['rate']:>12.1f}")
    print(f"Jobs created: {figures['job_creates']} for {figures['tasks_submitted']} tasks")
    print(f"rate ratio pipeline/chain {figures['rate_ratio']:.2f} (target >= 0.5: "
          f"{'met' if figures['rate_ratio'] >= 0.5 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
