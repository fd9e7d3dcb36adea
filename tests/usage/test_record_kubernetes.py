"""Usage from a pod's log (the Kubernetes runner, against the API emulator); limits in the Job's command."""

from __future__ import annotations

import pytest

from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.runs import build_request
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.usage.record import account_run
from tests.support.kube_emulator import KubeEmulator
from tests.support.runs import launching_task
from tests.usage.test_stream import FIXTURES


def test_a_pod_s_stream_json_gives_the_run_its_usage_and_the_job_its_limits(
        store: TaskStore, kube_settings: Settings, kube_runner: KubernetesRunner, emulator: KubeEmulator) -> None:
    settings = kube_settings.replace(default_max_cost_usd=3.0)
    run_id = launching_task(store, max_turns=12)
    task = store.require_task("billing", 1)
    request = build_request(settings, task, store.get_run(run_id))
    kube_runner.launch(request)
    command = emulator.get("jobs", run_id)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:5] == ["claude", "--max-budget-usd", "3", "--max-turns", "12"]
    assert "stream-json" in command and "--verbose" in command
    pod = emulator.start_pod(run_id)["metadata"]["name"]
    emulator.append_log(pod, *(FIXTURES / "denied.jsonl").read_text().splitlines())
    emulator.terminate_pod(pod, 0)
    verdict = account_run(store, settings, store.get_run(run_id), runner=kube_runner)
    assert verdict.failed and verdict.reason.startswith("permission denied: Bash(rm -rf")
    usage = store.get_run(run_id).usage
    assert usage["cost_usd"] == pytest.approx(0.05) and usage["permission_denials"]
