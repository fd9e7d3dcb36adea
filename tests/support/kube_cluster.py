"""A Kubernetes cluster for the fault tests: the API emulator, a stand-in Job controller, and the stack on it.

The emulator serves real HTTP from a thread of the test process; the stack's
processes reach it through a kubeconfig written here, so they use the official
client exactly as in a cluster.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.kube import jobs as kjobs
from tests.support.faults import FaultStack
from tests.support.kube_emulator import KubeEmulator


class JobController:
    """Stands in for Kubernetes' Job controller: a pod per new Job, which succeeds a moment later
    (except the Jobs of services named `hold-*`, which run until deleted)."""

    def __init__(self, emulator: KubeEmulator, run_seconds: float = 0.5):
        self.emu = emulator
        self.run_seconds = run_seconds
        self.started: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="job-controller", daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.1):
            for job in self.emu.items("jobs"):
                name = job["metadata"]["name"]
                if name not in self.started:
                    pod = self.emu.start_pod(name)
                    self.started[name] = time.monotonic()
                    self.emu.append_log(pod["metadata"]["name"], "agent: working")
                elif name.startswith("hold-"):
                    continue
                elif not job["status"].get("conditions") and time.monotonic() - self.started[name] > self.run_seconds:
                    for pod in self.emu.items("pods", selector=f"job-name={name}"):
                        self.emu.terminate_pod(pod["metadata"]["name"], 0)
                    self.emu.finish_job(name, "Complete")


def jobs_created(emu: KubeEmulator, run_id: str | None = None) -> int:
    """How many Jobs the API server created (for one run): its own ADDED events, not the requests."""
    with emu.cond:
        events = list(emu.state.events)
    return sum(
        1
        for _rv, kind, type_, obj in events
        if kind == "jobs" and type_ == "ADDED" and (run_id is None or kjobs.run_id_of(obj) == run_id)
    )


def write_kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
                "contexts": [
                    {"name": "emulator", "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"}}
                ],
            }
        )
    )
    return path


@contextmanager
def emulated_cluster() -> Iterator[KubeEmulator]:
    """The API emulator with the stand-in Job controller running beside it."""
    emu = KubeEmulator()
    emu.start()
    controller = JobController(emu)
    controller.thread.start()
    try:
        yield emu
    finally:
        controller.stop.set()
        controller.thread.join(timeout=5)
        emu.stop()


@contextmanager
def kube_stack(tmp: Path, emu: KubeEmulator, request_timeout: float) -> Iterator[FaultStack]:
    """The whole stack with the Kubernetes runner pointed at `emu` (the client's quick retries kept short)."""
    env = {
        "ORCHESTRATOR_RUNNER": "kubernetes",
        "ORCHESTRATOR_NAMESPACE": "default",
        "KUBECONFIG": str(write_kubeconfig(tmp / "kubeconfig", emu.url)),
        "ORCHESTRATOR_KUBE_REQUEST_TIMEOUT": str(request_timeout),
        "ORCHESTRATOR_KUBE_RETRIES": "3",
    }
    running = FaultStack(tmp, env=env)
    try:
        running.up()
        yield running
    finally:
        running.down()
