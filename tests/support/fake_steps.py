"""Stand-in prepare, launch and watcher steps for a real Celery worker (test only).

Loaded into a worker with `--include tests.support.fake_steps`. A step already
registered by `workers.steps` (the real one, once it lands) is replaced, so the
coordination tests control what the agent does.
"""

from __future__ import annotations

import workers.steps  # noqa: F401 - the real steps first, so the stand-ins below replace them
from orchestrator import runtime
from orchestrator.settings import get_settings
from orchestrator.steps import Step
from tests.support import coordination_harness as harness
from workers.app import app

for _name in (Step.PREPARE_WORKSPACE, Step.LAUNCH_RUN, Step.CANCEL_RUN):
    app.tasks.pop(_name, None)


@app.task(name=Step.PREPARE_WORKSPACE)
def prepare_workspace(run_id: str) -> None:
    """Stand-in: Preparing -> Launching, then launch_run."""
    harness.fake_prepare(runtime.get_store(), get_settings(), run_id)


@app.task(name=Step.LAUNCH_RUN)
def launch_run(run_id: str) -> None:
    """Stand-in: Launching -> Running; the fake agent writes its outputs."""
    harness.fake_launch(runtime.get_store(), get_settings(), run_id)


@app.task(name=Step.CANCEL_RUN)
def cancel_run(run_id: str) -> None:
    """Stand-in: nothing to stop."""


@app.task(name=harness.FAKE_WATCH)
def fake_watch(run_id: str) -> None:
    """Stand-in watcher: record the run's end, send finish_run."""
    harness.fake_watch(runtime.get_store(), get_settings(), run_id)
