"""How many Kubernetes API requests one reconcile period costs with 10, 100 and 1,000 active runs.

Runs the real watcher code against the HTTP emulator and a throw-away
redis-server, and prints requests per reconcile (constant: one list of Jobs,
one of pods) and the time a reconcile takes. `python bench/tracking.py`
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import runs  # noqa: E402
from orchestrator.kube.client import KubeClient  # noqa: E402
from orchestrator.runners.kubernetes import KubernetesRunner  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.store import TaskStore, connect  # noqa: E402
from orchestrator.watcher import Watcher  # noqa: E402
from tests.support.kube_emulator import KubeEmulator  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.runs import Sent, launching_task  # noqa: E402


def measure(store: TaskStore, settings: Settings, count: int) -> tuple[int, float, int]:
    store.redis.flushall()
    emulator = KubeEmulator()
    emulator.start()
    try:
        runner = KubernetesRunner(settings, KubeClient.from_settings(settings, emulator.api_client()))
        for task_id in range(1, count + 1):
            run_id = launching_task(store, "svc", task_id)
            runs.launch(store, settings, runner, run_id, send=Sent())
            emulator.start_pod(f"svc-{task_id}-v1-a1", suffix="p")
        watcher = Watcher(store, settings, runner, send=Sent())
        watcher.reconcile()  # first pass moves every task to Running
        before = len(emulator.requests)
        started = time.perf_counter()
        report = watcher.reconcile()
        elapsed = time.perf_counter() - started
        assert report.active == count
        return len(emulator.requests) - before, elapsed, report.observed
    finally:
        emulator.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            store = TaskStore(connect(server.url))
            settings = Settings.from_env({"ORCHESTRATOR_REDIS_URL": server.url, "ORCHESTRATOR_RUNNER": "kubernetes"})
            print(f"{'active runs':>12} {'API requests / reconcile':>26} {'observed':>9} {'reconcile time':>15}")
            for count in (10, 100, 1000):
                requests, elapsed, observed = measure(store, settings, count)
                print(f"{count:>12} {requests:>26} {observed:>9} {elapsed * 1000:>12.0f} ms")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
