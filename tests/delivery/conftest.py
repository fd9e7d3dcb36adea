"""Fixtures for delivery tests: the token-protected git remote of the workspace tests, a GitHub emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import dispatch
from orchestrator.github import reporter
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.workspace.step import prepare_for_run
from tests.support.fake_github import FakeGitHub
from tests.workspace.conftest import REPO_URL, TOKEN, git_server, remote, start_run, task_spec  # noqa: F401

__all__ = ["REPO_URL", "TOKEN", "git_server", "remote", "start_run", "task_spec"]


class Recorder:
    """A dispatcher that records every step instead of queueing it (the write it goes with is applied first)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def send(self, step: str, *args: Any, write: Any = None, countdown: float | None = None,
             argsrepr: str | None = None) -> Any:
        written = write.apply(None) if write is not None else None
        if write is None or written:
            self.calls.append((step, args))
        return written


@pytest.fixture
def sent() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every step sent, instead of queueing it."""
    recorder = Recorder()
    previous = dispatch.install(recorder)
    yield recorder.calls
    dispatch.install(previous)


@pytest.fixture
def dl_settings(settings: Settings, tmp_path: Path, github: FakeGitHub) -> Settings:
    return settings.replace(github_token=TOKEN, workspace_root=tmp_path / "ws", git_timeout_seconds=30,
                            github_api_url=github.url, delivery_backoff_seconds=0.01, delivery_retries=2)


def prepare_and_run(store: TaskStore, settings: Settings, spec: dict[str, Any], **kwargs: Any) -> str:
    """The task prepared by the real preparation step and its agent running; returns the run id."""
    run_id = start_run(store, spec, **kwargs)
    result = prepare_for_run(store, settings, run_id)
    assert result.action == "launched", result.message
    store.transition(spec["service_name"], int(spec["id"]), Status.RUNNING, reason="agent started", actor="test")
    return run_id


def agent_ended(store: TaskStore, run_id: str, *, phase: str = "Succeeded") -> None:
    """What the watcher records when the agent exits."""
    store.update_run(run_id, phase=phase, exit_code=0 if phase == "Succeeded" else 1, finished_at=time.time(),
                     retryable="0")


class InlineReports:
    """A dispatcher that records every step and writes each status report at once (no pacing here)."""

    def __init__(self, store: TaskStore, settings: Settings, github: FakeGitHub) -> None:
        self.store, self.settings, self.github = store, settings, github
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.comments: list[str] = []  # the comment's body after each report that wrote it

    def send(
        self, step: str, *args: Any, write: Any = None, countdown: float | None = None, argsrepr: str | None = None
    ) -> Any:
        written = write.apply(None) if write is not None else None
        if write is None or written:
            self.calls.append((step, args))
            if step == Step.REPORT_STATUS:
                result = reporter.report_status(self.store, self.settings, args[0], int(args[1]))
                if result in ("created", "updated"):
                    (comment,) = self.github.comments.values()
                    self.comments.append(comment["body"])
        return written

    def headline(self) -> str:
        return self.comments[-1].split("\n")[3]


@pytest.fixture
def reports(
    store: TaskStore, dl_settings: Settings, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InlineReports]:
    monkeypatch.setattr(reporter, "EDIT_INTERVAL_SECONDS", 0.0)
    # The steps read the process's settings (as a worker does): GITHUB_TOKEN and the emulator's URL.
    monkeypatch.setenv("GITHUB_TOKEN", dl_settings.github_token)
    monkeypatch.setenv("ORCHESTRATOR_GITHUB_API_URL", github.url)
    monkeypatch.setenv("ORCHESTRATOR_WORKSPACE_ROOT", str(dl_settings.workspace_root))
    from orchestrator.settings import reset_settings_cache

    reset_settings_cache()
    recorder = InlineReports(store, dl_settings, github)
    previous = dispatch.install(recorder)
    yield recorder
    dispatch.install(previous)
    reset_settings_cache()
