"""The status comment: created once, then edited; reporting never fails a task (fake GitHub over HTTP)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from orchestrator import effects
from orchestrator.github import reporter
from orchestrator.github.client import GitHubClient
from orchestrator.github.reporter import ReportLater, notify_status, render_status, report_status
from orchestrator.github.routing import GitHubConfig, match
from orchestrator.model import Task
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.fake_github import FakeGitHub
from tests.support.github import BOT, REPO, SERVICE, queued

TOKEN = "ghp_reporter_token"


@pytest.fixture
def report_settings(github_settings: Settings, github: FakeGitHub) -> Settings:
    return github_settings.replace(github_token=TOKEN, github_api_url=github.url)


@pytest.fixture(autouse=True)
def unpaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Edits are not paced here (test_status_pacing.py covers the interval)."""
    monkeypatch.setattr(reporter, "EDIT_INTERVAL_SECONDS", 0.0)


def client_for(settings: Settings) -> GitHubClient:
    return GitHubClient.from_settings(settings, sleep=lambda s: None, backoff=0.01)


def github_task(store: TaskStore, task_id: int = 4) -> None:
    store.create_task(service=SERVICE, task_id=task_id, agent="claude", spec={"id": task_id},
                      origin={"github": {"repo": REPO, "issue": task_id, "url": "u"}})


def move(store: TaskStore, task_id: int, *statuses: Status, reason: str = "") -> None:
    for status in statuses:
        store.transition(SERVICE, task_id, status, reason=reason or f"now {status}", actor="test")


def test_one_comment_created_then_edited(store: TaskStore, report_settings: Settings, github: FakeGitHub) -> None:
    github_task(store)
    client = client_for(report_settings)
    assert report_status(store, report_settings, SERVICE, 4, client=client) == "created"
    assert report_status(store, report_settings, SERVICE, 4, client=client) == "unchanged"
    move(store, 4, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING)
    store.create_run(SERVICE, 4, version=1, attempt=1, job_name="orch-hello-world-4-v1-a1")
    store.update_task(SERVICE, 4, current_run="hello-world-4-v1-a1")
    assert report_status(store, report_settings, SERVICE, 4, client=client) == "updated"
    (comment,) = github.comments.values()
    assert comment["issue"] == 4 and comment["repo"] == REPO
    assert "Running" in comment["body"] and "orch-hello-world-4-v1-a1" in comment["body"]

    move(store, 4, Status.SUCCEEDED)
    store.update_task(SERVICE, 4, outputs={"pull_request_url": f"https://github.com/{REPO}/pull/11"})
    assert report_status(store, report_settings, SERVICE, 4, client=client) == "updated"
    assert len(github.comments) == 1
    assert f"https://github.com/{REPO}/pull/11" in comment["body"] and "Succeeded" in comment["body"]
    assert [r.method for r in github.requests] == ["POST", "PATCH", "PATCH"]
    # The report links the pull request, so comments and reviews on it find the task.
    assert store.task_for_pull_request(f"{REPO.lower()}#11") == (SERVICE, 4)


def test_a_comment_created_by_a_worker_that_died_before_recording_it_is_found_not_posted_again(
        store: TaskStore, report_settings: Settings, github: FakeGitHub) -> None:
    github_task(store)
    client = client_for(report_settings)
    # The dead worker recorded its intent and posted the comment, then died: no comment id on the task.
    subject = f"{SERVICE}/4:{REPO}#4"
    store.begin_effect(effects.COMMENT, subject, "dead-worker", 0.01)
    client.create_comment(REPO, 4, render_status(store.get_task(SERVICE, 4)))
    time.sleep(0.02)
    assert report_status(store, report_settings, SERVICE, 4, client=client) == "created"
    assert len(github.comments) == 1 and len(github.requests_to("POST", "/comments")) == 1
    (comment_id,) = github.comments
    assert store.get_task(SERVICE, 4).github_status_comment == str(comment_id)
    assert store.effect(effects.COMMENT, subject)["how"] == "found"
    # Delivered again after the record: the comment is edited, never posted again.
    store.update_task(SERVICE, 4, github_status_digest="", github_status_comment="")
    report_status(store, report_settings, SERVICE, 4, client=client)
    assert len(github.requests_to("POST", "/comments")) == 1


def test_failure_reason_is_shown_without_secrets_or_mentions(store: TaskStore, report_settings: Settings,
                                                              github: FakeGitHub) -> None:
    github_task(store)
    move(store, 4, Status.FAILED, reason=f"agent exited 1: bad token {TOKEN} (cc @octocat)")
    report_status(store, report_settings, SERVICE, 4, client=client_for(report_settings))
    (comment,) = github.comments.values()
    assert "Failed" in comment["body"] and "agent exited 1" in comment["body"]
    assert TOKEN not in comment["body"] and "@octocat" not in comment["body"]


def test_the_status_comment_never_triggers_the_system(store: TaskStore, report_settings: Settings) -> None:
    github_task(store)
    task = store.require_task(SERVICE, 4)
    body = render_status(task)
    payload = {"action": "created", "repository": {"full_name": REPO},
               "issue": {"number": 4}, "sender": {"login": "someone", "type": "User"},
               "comment": {"body": body + "\n/orchestrator run", "author_association": "OWNER",
                           "user": {"login": "someone", "type": "User"}}}
    decision = match("issue_comment", payload, GitHubConfig(repositories={REPO.lower(): SERVICE}, bot_login=BOT))
    assert not decision.routed and "status comments" in decision.reason


def test_a_deleted_comment_is_written_again(store: TaskStore, report_settings: Settings, github: FakeGitHub) -> None:
    github_task(store)
    client = client_for(report_settings)
    report_status(store, report_settings, SERVICE, 4, client=client)
    github.comments.clear()  # someone deleted it
    move(store, 4, Status.CANCELLED)
    assert report_status(store, report_settings, SERVICE, 4, client=client) == "created"
    assert len(github.comments) == 1


def test_github_trouble_is_retried_later_and_never_touches_the_task(store: TaskStore, report_settings: Settings,
                                                                   github: FakeGitHub) -> None:
    github_task(store)
    before = store.require_task(SERVICE, 4)
    github.fail_next(503, times=4)  # every attempt of the client
    with pytest.raises(ReportLater) as info:
        report_status(store, report_settings, SERVICE, 4, client=client_for(report_settings))
    assert info.value.countdown >= 5
    github.fail_next(422)
    assert report_status(store, report_settings, SERVICE, 4, client=client_for(report_settings)) == "refused"
    after = store.require_task(SERVICE, 4)
    assert (after.status, after.status_reason) == (before.status, before.status_reason)
    # The lock was released both times: the next report goes through.
    assert report_status(store, report_settings, SERVICE, 4, client=client_for(report_settings)) == "created"


def test_a_concurrent_report_waits(store: TaskStore, report_settings: Settings) -> None:
    github_task(store)
    store.acquire_lease(f"github-status:{SERVICE}/4", "another-worker", 30)
    with pytest.raises(ReportLater):
        report_status(store, report_settings, SERVICE, 4, client=client_for(report_settings))


def test_tasks_not_from_github_are_skipped(store: TaskStore, report_settings: Settings, github: FakeGitHub,
                                           redis_url: str) -> None:
    store.create_task(service=SERVICE, task_id=5, agent="claude", spec={"id": 5})
    assert report_status(store, report_settings, SERVICE, 5) == "skipped"
    assert not notify_status(SERVICE, 5, store=store, settings=report_settings)
    assert github.requests == [] and queued(redis_url, "events") == []


def test_notify_queues_only_for_github_tasks_with_a_token(store: TaskStore, report_settings: Settings,
                                                          redis_url: str) -> None:
    github_task(store)
    assert not notify_status(SERVICE, 4, store=store, settings=report_settings.replace(github_token=""))
    assert notify_status(SERVICE, 4, store=store, settings=report_settings)
    assert queued(redis_url, "events") == [{"step": "orchestrator.report_status", "args": [SERVICE, 4]}]


def test_notify_never_raises(report_settings: Settings) -> None:
    from orchestrator.store import TaskStore, connect

    dead = TaskStore(connect("redis://127.0.0.1:1/0", timeout=0.2))
    assert notify_status(SERVICE, 4, store=dead, settings=report_settings) is False


def test_render_each_status() -> None:
    task = Task(service=SERVICE, id=4, agent="claude")
    for status in Status:
        body = render_status(dataclasses.replace(task, status=status))
        assert body.startswith("<!-- orchestrator:status") and status.value in body
