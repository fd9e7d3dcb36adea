"""Test-only pauses inside pipeline steps, so a fault test can kill a worker in the middle of one.

Loaded only by test workers, with `celery ... worker --include tests.support.step_hooks`;
no production module imports it. Configuration (environment of that worker):

  ORCHESTRATOR_TEST_STEP_DELAY  `<step>=<seconds>`: the point inside <step> where the worker pauses
  ORCHESTRATOR_TEST_HOOK_DIR    where `<step>.reached` is created when the pause begins

The pause happens once per worker (the first time the point is reached, whichever
pool process reaches it; the marker file is created with O_EXCL), and it sits
*after* a side effect and *before* the step records it, the worst moment to die:

  admit              a run slot was taken; the task is still Queued (no move to Preparing yet)
  prepare_workspace  the task documents are written; CLAUDE.md and the move to Launching are not
  launch_run         the Job (or local process) exists; its name is not recorded on the run yet
  finish_run         the run's outputs were read; the task's outcome is not recorded yet

Every side effect recorded through `orchestrator.effects.once` has three more
points, named `<kind>.<point>` (kinds: job, local-agent, push, pull-request,
comment; e.g. `ORCHESTRATOR_TEST_STEP_DELAY=push.between=120`):

  <kind>.before   its intent is recorded; the effect was not caused yet
  <kind>.between  the effect was caused; its completion is not recorded yet
  <kind>.after    its completion is recorded; the step did not act on it yet
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DELAY_VARIABLE = "ORCHESTRATOR_TEST_STEP_DELAY"
DIR_VARIABLE = "ORCHESTRATOR_TEST_HOOK_DIR"


def _config() -> tuple[str, float, Path] | None:
    raw = os.environ.get(DELAY_VARIABLE, "")
    if "=" not in raw:
        return None
    step, _, seconds = raw.partition("=")
    return step.strip(), float(seconds), Path(os.environ.get(DIR_VARIABLE) or "/tmp")


def _pause(step: str) -> None:
    config = _config()
    if config is None or config[0] != step:
        return
    _, seconds, directory = config
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(directory / f"{step}.reached", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return  # paused once already
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    print(f"TEST HOOK: pausing in {step} for {seconds}s (pid {os.getpid()})", flush=True)
    time.sleep(seconds)
    print(f"TEST HOOK: resuming {step}", flush=True)


def _after(step: str, func: Callable[..., Any], when: Callable[[Any], bool] = lambda result: True) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        if when(result):
            _pause(step)
        return result

    wrapper.__wrapped_by_step_hooks__ = True  # type: ignore[attr-defined]
    return wrapper


def install() -> None:
    """Wrap the pause points (once)."""
    from orchestrator import effects
    from orchestrator.coordination import outcome
    from orchestrator.runners.kubernetes import KubernetesRunner
    from orchestrator.runners.local import LocalRunner
    from orchestrator.store import TaskStore
    from orchestrator.workspace import prepare

    if getattr(TaskStore.acquire_slot, "__wrapped_by_step_hooks__", False):
        return
    TaskStore.acquire_slot = _after("admit", TaskStore.acquire_slot, lambda code: code == 1)  # type: ignore[method-assign]
    prepare._write_documents = _after("prepare_workspace", prepare._write_documents)
    LocalRunner.launch = _after("launch_run", LocalRunner.launch)  # type: ignore[method-assign]
    KubernetesRunner.launch = _after("launch_run", KubernetesRunner.launch)  # type: ignore[method-assign]
    outcome.read_outputs = _after("finish_run", outcome.read_outputs)
    for point, name in (("before", "before_effect"), ("between", "after_effect"), ("after", "after_record")):
        setattr(effects, name, _at_effect(point, getattr(effects, name)))


def _at_effect(point: str, func: Callable[[str, str], None]) -> Callable[[str, str], None]:
    @functools.wraps(func)
    def wrapper(kind: str, subject: str) -> None:
        func(kind, subject)
        _pause(f"{kind}.{point}")

    return wrapper


if _config() is not None:
    install()
