"""GitHub within its limits: one comment edited at most once per interval (the last state still lands), one
write budget shared through Redis by every process, and GitHub's secondary rate limit honoured by all writers
without losing a write (GitHub emulator over HTTP, a real Redis)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import dispatch
from orchestrator.github import reporter
from orchestrator.github.client import GitHubClient, GitHubError
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.steps import Step
from orchestrator.store import TaskStore, connect
from tests.support.fake_github import FakeGitHub
from tests.support.github import REPO, SERVICE

TOKEN = "ghp_pacing_token"
INTERVAL = 1.0


@pytest.fixture
def gh_settings(github_settings: Settings, github: FakeGitHub) -> Settings:
    return github_settings.replace(github_token=TOKEN, github_api_url=github.url)


class Scheduled:
    """A dispatcher that keeps what is sent (with its countdown) instead of queueing it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...], float | None]] = []

    def send(
        self, step: str, *args: Any, write: Any = None, countdown: float | None = None, argsrepr: str | None = None
    ) -> Any:
        written = write.apply(None) if write is not None else None
        self.sent.append((step, args, countdown))
        return written


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scheduled]:
    monkeypatch.setattr(reporter, "EDIT_INTERVAL_SECONDS", INTERVAL)
    recorder = Scheduled()
    previous = dispatch.install(recorder)
    yield recorder
    dispatch.install(previous)


def github_task(store: TaskStore, task_id: int = 4) -> None:
    store.create_task(
        service=SERVICE,
        task_id=task_id,
        agent="claude",
        spec={"id": task_id},
        origin={"github": {"repo": REPO, "issue": task_id, "url": "u"}},
    )


def client(settings: Settings, store: TaskStore, **kwargs: Any) -> GitHubClient:
    return GitHubClient.from_settings(settings, store=store, backoff=0.01, **kwargs)


def test_edits_inside_the_interval_are_coalesced_into_one_trailing_edit_with_the_last_state(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub, scheduled: Scheduled
) -> None:
    github_task(store)
    report = lambda trailing=False: reporter.report_status(  # noqa: E731
        store, gh_settings, SERVICE, 4, client=client(gh_settings, store), trailing=trailing
    )
    assert report() == "created"
    for status in (Status.QUEUED, Status.PREPARING, Status.LAUNCHING):
        store.transition(SERVICE, 4, status, reason=f"now {status}", actor="test")
        first = status == Status.QUEUED
        assert report() == ("deferred" if first else "coalesced")
    # One later edit is scheduled, at the end of the interval; nothing else was written.
    assert [(step, args) for step, args, _ in scheduled.sent] == [(Step.REPORT_STATUS, (SERVICE, 4, True))]
    assert 0 < scheduled.sent[0][2] <= INTERVAL
    assert len(github.writes()) == 1
    # Come early (a clock ahead), it schedules itself again rather than write or give up.
    assert report(trailing=True) == "deferred" and len(scheduled.sent) == 2 and len(github.writes()) == 1
    time.sleep(INTERVAL + 0.1)
    store.transition(SERVICE, 4, Status.RUNNING, reason="started", actor="test")
    assert report(trailing=True) == "updated"
    (comment,) = github.comments.values()
    assert "🏃 Running" in comment["body"]  # the newest state, not the one that scheduled the edit
    edits = [r for r in github.writes() if r.method == "PATCH"]
    assert len(edits) == 1
    # The trailing edit is done: the next change inside the new interval schedules a new one.
    store.transition(SERVICE, 4, Status.SUCCEEDED, reason="done", actor="test")
    assert report() == "deferred" and scheduled.sent[-1][1] == (SERVICE, 4, True)


def test_the_write_budget_is_shared_by_processes(store: TaskStore, redis_url: str) -> None:
    other = TaskStore(connect(redis_url))  # another worker process's store
    now = 1_000.0
    assert [
        store.take_github_write(3, now=now),
        other.take_github_write(3, now=now + 1),
        store.take_github_write(3, now=now + 2),
    ] == [0, 0, 0]
    wait = other.take_github_write(3, now=now + 10)
    assert wait == pytest.approx(50.0)  # until the first write leaves the minute
    assert store.take_github_write(3, now=now + 60.5) == 0
    other.redis.close()


def test_a_busy_budget_makes_the_write_wait_then_go(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub
) -> None:
    slept: list[float] = []
    limited = gh_settings.replace(github_writes_per_minute=2)
    gh = client(limited, store, sleep=slept.append)
    gh.create_comment(REPO, 4, "one")
    gh.create_comment(REPO, 4, "two")
    with pytest.raises(GitHubError) as spent:  # a minute is longer than a step may block: later
        gh.create_comment(REPO, 4, "three")
    assert spent.value.rate_limited and spent.value.transient and 50 < spent.value.retry_after <= 60
    assert len(github.writes()) == 2  # the third never reached GitHub
    assert gh.find_comment(REPO, 4, "one") is not None  # reads are not budgeted


def test_a_secondary_rate_limit_pauses_every_writer_and_the_report_is_retried_not_lost(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub, redis_url: str
) -> None:
    github_task(store)
    github.secondary_rate_limit(retry_after=30)
    with pytest.raises(reporter.ReportLater) as later:
        reporter.report_status(store, gh_settings, SERVICE, 4, client=client(gh_settings, store))
    assert later.value.rate_limited and later.value.countdown >= 29
    assert len(github.writes()) == 1
    # Another worker's write waits for the same pause, without asking GitHub.
    other = TaskStore(connect(redis_url))
    with pytest.raises(GitHubError) as paused:
        client(gh_settings, other).create_comment(REPO, 9, "hello")
    assert paused.value.rate_limited and paused.value.retry_after > 25
    assert len(github.writes()) == 1
    other.redis.close()


def test_the_rate_limit_reset_header_is_honoured(store: TaskStore, gh_settings: Settings, github: FakeGitHub) -> None:
    github.secondary_rate_limit(reset_in=2)
    slept: list[float] = []
    gh = client(gh_settings, store, sleep=lambda s: (slept.append(s), time.sleep(s)))
    gh.create_comment(REPO, 4, "hello")  # waited for the reset (inside the step's patience), then wrote
    assert slept and 0.5 <= max(slept) <= 3
    assert [r.method for r in github.writes()] == ["POST", "POST"]


def test_a_secondary_limit_without_a_stated_wait_waits_a_minute(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub
) -> None:
    github.secondary_rate_limit()
    with pytest.raises(GitHubError) as limited:
        client(gh_settings, store).create_comment(REPO, 4, "hello")
    assert limited.value.rate_limited and limited.value.retry_after == pytest.approx(60, abs=1)


def test_5xx_answers_are_retried_and_every_request_counted(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub
) -> None:
    github.fail_next(502, times=2)
    gh = client(gh_settings, store, sleep=lambda s: None)
    assert gh.create_comment(REPO, 4, "hello")["id"]
    assert [r.method for r in github.writes()] == ["POST", "POST", "POST"]
    assert len(github.comments) == 1
