"""A review on our pull request starts one follow-up run whose context is the whole review, however many
events GitHub sends for it (the review, then one per inline comment, in any order)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from orchestrator.github.handlers import handle_event
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.fake_github import FakeGitHub
from tests.support.github import REPO, SERVICE, load

PR_URL = f"https://github.com/{REPO}/pull/2"
REVIEW_ID = 555


@pytest.fixture
def gh_settings(github_settings: Settings, github: FakeGitHub) -> Settings:
    return github_settings.replace(github_token="ghp_review", github_api_url=github.url)


def our_pull_request(store: TaskStore) -> None:
    store.create_task(service=SERVICE, task_id=9, agent="claude", spec={"id": 9})
    for status in (Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING, Status.SUCCEEDED):
        store.transition(SERVICE, 9, status, reason="seed", actor="test")
    store.update_task(SERVICE, 9, outputs={"pull_request_url": PR_URL})


def inline(comment_id: int, path: str, body: str) -> dict[str, Any]:
    return {
        "id": comment_id,
        "pull_request_review_id": REVIEW_ID,
        "path": path,
        "line": 3,
        "body": body,
        "diff_hunk": "@@ -1,3 +1,3 @@\n-old\n+new",
        "user": {"login": "octocat", "type": "User"},
        "author_association": "OWNER",
        "html_url": f"{PR_URL}#discussion_r{comment_id}",
    }


COMMENTS = [
    inline(11, "app.py", "Name this constant."),
    inline(12, "README.md", "Say how to run it."),
    inline(13, "app.py", "No print here."),
]


def review_event() -> dict[str, Any]:
    payload = load("pull_request_review/submitted.payload.json")
    payload["review"].update(id=REVIEW_ID, state="changes_requested", body="A few things.", author_association="OWNER")
    return payload


def comment_event(comment: dict[str, Any]) -> dict[str, Any]:
    payload = load("pull_request_review_comment/created.payload.json")
    payload["comment"] = copy.deepcopy(comment)
    return payload


def deliver(store: TaskStore, settings: Settings, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return handle_event(store, settings, str(uuid.uuid4()), event, payload)


def test_one_review_with_inline_comments_starts_one_run_with_all_of_it(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub
) -> None:
    our_pull_request(store)
    github.add_review(
        REPO,
        2,
        {
            "id": REVIEW_ID,
            "state": "CHANGES_REQUESTED",
            "body": "A few things.",
            "user": {"login": "octocat"},
            "html_url": f"{PR_URL}#pullrequestreview-555",
        },
        COMMENTS,
    )
    # GitHub's order is not fixed: an inline comment's event may come before the review's.
    results = [
        deliver(store, gh_settings, "pull_request_review_comment", comment_event(COMMENTS[1])),
        deliver(store, gh_settings, "pull_request_review", review_event()),
        deliver(store, gh_settings, "pull_request_review_comment", comment_event(COMMENTS[0])),
        deliver(store, gh_settings, "pull_request_review_comment", comment_event(COMMENTS[2])),
    ]
    assert [r["status"] for r in results] == ["changed", "ignored", "ignored", "ignored"]
    assert "already started a run" in results[1]["detail"]
    task = store.require_task(SERVICE, 9)
    assert task.status == Status.PENDING and task.context_version == 2  # one new run, not four
    (context,) = store.contexts(SERVICE, 9)
    content = context["content"]
    assert content.startswith("# Changes requested by @octocat on pull request #2")
    assert "A few things." in content
    for comment in COMMENTS:
        assert comment["body"] in content
    assert "### File `README.md`, line 3 (@octocat)" in content and "+new" in content
    assert context["filename"] == f"review-{REVIEW_ID}.md"


def test_without_github_the_event_text_is_the_context(store: TaskStore, github_settings: Settings) -> None:
    our_pull_request(store)
    assert (
        deliver(store, github_settings, "pull_request_review_comment", comment_event(COMMENTS[0]))["status"]
        == "changed"
    )
    assert (
        deliver(store, github_settings, "pull_request_review_comment", comment_event(COMMENTS[1]))["status"]
        == "ignored"
    )
    (context,) = store.contexts(SERVICE, 9)
    assert "Name this constant." in context["content"] and "app.py" in context["content"]


def test_when_github_cannot_say_the_event_text_is_the_context(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub
) -> None:
    our_pull_request(store)
    github.fail_next(404, times=3)  # the review and its comments cannot be read
    assert deliver(store, gh_settings, "pull_request_review", review_event())["status"] == "changed"
    assert any(r.path.endswith(f"/reviews/{REVIEW_ID}") for r in github.requests)  # it asked, and was refused
    (context,) = store.contexts(SERVICE, 9)
    assert "A few things." in context["content"]


def test_a_second_review_starts_another_run(store: TaskStore, github_settings: Settings) -> None:
    our_pull_request(store)
    assert deliver(store, github_settings, "pull_request_review", review_event())["status"] == "changed"
    second = review_event()
    second["review"]["id"] = REVIEW_ID + 1
    assert deliver(store, github_settings, "pull_request_review", second)["status"] == "changed"
    assert store.require_task(SERVICE, 9).context_version == 3


def test_run_on_our_pull_request_starts_a_follow_up_with_the_review_comments(
    store: TaskStore, gh_settings: Settings, github: FakeGitHub
) -> None:
    our_pull_request(store)
    github.add_review(REPO, 2, {"id": REVIEW_ID, "state": "COMMENTED", "body": ""}, COMMENTS[:2])
    payload = load("issue_comment/created.payload.json")
    payload["issue"]["number"] = 2
    payload["issue"]["pull_request"] = {"html_url": PR_URL, "url": f"https://api.github.com/repos/{REPO}/pulls/2"}
    payload["comment"].update(body="/orchestrator run\nPlease address the comments.", author_association="MEMBER")
    result = deliver(store, gh_settings, "issue_comment", payload)
    assert result["status"] == "changed" and result["task"] == f"{SERVICE}/9"
    (context,) = store.contexts(SERVICE, 9)
    content = context["content"]
    assert "Please address the comments." in content and "## Review comments on the pull request" in content
    assert "Name this constant." in content and "Say how to run it." in content
    assert store.require_task(SERVICE, 9).context_version == 2
