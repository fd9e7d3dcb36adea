"""Runners: where a run's agent executes (a Kubernetes Job, or a local process)."""

from __future__ import annotations

import os

from orchestrator.runners.base import Runner
from orchestrator.runners.errors import LaunchFailed, LogsUnavailable, RunnerError
from orchestrator.settings import ConfigError, Settings


def get_runner(settings: Settings) -> Runner:
    """The runner ORCHESTRATOR_RUNNER names; the local one is never picked by default inside a cluster."""
    if settings.runner == "kubernetes":
        from orchestrator.runners.kubernetes import KubernetesRunner

        return KubernetesRunner(settings)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("ORCHESTRATOR_RUNNER"):
        # Running agents inside the worker's pod by accident would be silent and wrong.
        raise ConfigError(
            "ORCHESTRATOR_RUNNER: running inside Kubernetes; set it to 'kubernetes' (or 'local' explicitly)"
        )
    from orchestrator.runners.local import LocalRunner

    return LocalRunner(settings)


__all__ = ["get_runner", "Runner", "RunnerError", "LaunchFailed", "LogsUnavailable"]
