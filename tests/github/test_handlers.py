"""What routed events do to tasks (real Redis; the handler's plain code, in-process)."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from orchestrator.github.handlers import handle_event, task_spec_from_issue
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.github import BOT, ISSUE_TASK, REPO, SERVICE, drain, load, queued

PR_URL = f"https://github.com/{REPO}/pull/2"


def deliver(store: TaskStore, settings: Settings, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return handle_event(store, settings, str(uuid.uuid4()), event, payload)


def comment_on_issue(body: str, *, issue: int = 1, login: str = "alice") -> dict[str, Any]:
    payload = load("issue_comment/created.payload.json")
    payload["issue"]["number"] = issue
    payload["comment"].update(body=body, author_association="MEMBER")
    payload["comment"]["user"]["login"] = payload["sender"]["login"] = login
    return payload


def comment_on_pull_request(body: str) -> dict[str, Any]:
    payload = comment_on_issue(body, issue=2)
    payload["issue"]["pull_request"] = {"html_url": PR_URL, "url": f"https://api.github.com/repos/{REPO}/pulls/2"}
    return payload


def move(store: TaskStore, task_id: int, *statuses: Status) -> None:
    for status in statuses:
        store.transition(SERVICE, task_id, status, reason=f"test: {status}", actor="test")


def create_from_issue(store: TaskStore, settings: Settings) -> dict[str, Any]:
    result = deliver(store, settings, "issues", load("issues/labeled.payload.json"))
    assert result["status"] == "changed"
    return store.require_task(SERVICE, ISSUE_TASK)


def pr_task(store: TaskStore, task_id: int = 9, **outputs: Any) -> None:
    store.create_task(service=SERVICE, task_id=task_id, agent="claude", spec={"id": task_id})
    move(store, task_id, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING, Status.SUCCEEDED)
    if outputs:
        store.update_task(SERVICE, task_id, outputs=outputs)


def test_an_issue_becomes_a_task(store: TaskStore, github_settings: Settings, redis_url: str) -> None:
    task = create_from_issue(store, github_settings)
    spec = task.spec
    assert task.status == "Pending" and task.agent == "claude" and task.service == SERVICE
    assert task.origin == {"github": {"repo": REPO, "issue": 1,
                                         "url": f"https://github.com/{REPO}/issues/1"}}
    assert spec["id"] == ISSUE_TASK and spec["title"] == "Spelling error in the README file"
    assert spec["repository"] == {"url": f"https://github.com/{REPO}.git", "branch": "master"}
    assert set(spec) >= {"id", "title", "description", "details", "test_strategy", "priority", "status",
                         "dependencies", "subtasks", "service_name", "agent_name", "markdown_files"}
    (document,) = spec["markdown_files"]
    assert document["filename"] == "task.md" and document["file_type"] == "task"
    assert "accidently spelled" in document["content"] and spec["title"] in document["content"]
    assert [m["step"] for m in queued(redis_url, "coordination")] == ["orchestrator.admit"]


def test_an_empty_body_and_a_missing_title_still_make_a_document() -> None:
    payload = load("issues/opened.with-empty-body.payload.json")
    payload["issue"]["title"] = None
    spec = task_spec_from_issue(payload, SERVICE, "claude")
    assert spec["title"] == "Issue #1" and spec["details"] == ""


@pytest.mark.parametrize("field,value,reason", [
    ("clone_url", "https://evil.example/acme/repo.git", "not in the allowed list"),
    ("clone_url", "file:///etc/passwd", "https://"),
    ("clone_url", "--upload-pack=touch /tmp/x", "forbidden characters"),
    ("default_branch", "--orphan", "branch"),
    ("default_branch", "main; rm -rf /", "branch"),
])
def test_an_issue_naming_a_refused_repository_makes_no_task(store: TaskStore, github_settings: Settings,
                                                            field: str, value: str, reason: str) -> None:
    payload = load("issues/labeled.payload.json")
    payload["repository"][field] = value
    result = deliver(store, github_settings, "issues", payload)
    assert result["status"] == "ignored" and "repository is refused" in result["detail"], result
    assert reason in result["detail"]
    assert store.get_task(SERVICE, ISSUE_TASK) is None


def test_an_enterprise_host_is_taken_from_the_payload_when_allowed(store: TaskStore,
                                                                   github_settings: Settings) -> None:
    payload = load("issues/labeled.payload.json")
    payload["repository"]["clone_url"] = f"https://git.acme.example/{REPO}.git"
    assert deliver(store, github_settings, "issues", payload)["status"] == "ignored"
    allowed = github_settings.replace(allowed_git_hosts=("github.com", "git.acme.example"))
    assert deliver(store, allowed, "issues", payload)["status"] == "changed"
    assert store.require_task(SERVICE, ISSUE_TASK).spec["repository"]["url"] == f"https://git.acme.example/{REPO}.git"


def test_the_default_agent_is_validated(store: TaskStore, github_settings: Settings) -> None:
    result = deliver(store, github_settings.replace(default_agent="Bad Agent"), "issues",
                     load("issues/labeled.payload.json"))
    assert result["status"] == "ignored" and "ORCHESTRATOR_DEFAULT_AGENT" in result["detail"]
    assert store.get_task(SERVICE, ISSUE_TASK) is None


def test_an_issue_whose_number_is_a_pm_task_id_gets_its_own_task(store: TaskStore, github_settings: Settings) -> None:
    store.create_task(service=SERVICE, task_id=1, agent="claude", spec={"id": 1, "title": "the PM's own task"})
    result = deliver(store, github_settings, "issues", load("issues/labeled.payload.json"))
    assert result["status"] == "changed" and result["task"] == f"{SERVICE}/{ISSUE_TASK}"
    assert ISSUE_TASK == 1_000_000_001
    assert store.require_task(SERVICE, 1).spec["title"] == "the PM's own task"
    assert store.require_task(SERVICE, ISSUE_TASK).origin["github"]["issue"] == 1
    # A comment on issue #1 steers the issue's task, never the PM's task 1.
    result = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator cancel"))
    assert result["status"] == "changed" and result["task"] == f"{SERVICE}/{ISSUE_TASK}"
    assert store.require_task(SERVICE, 1).status == "Pending"
    assert store.require_task(SERVICE, ISSUE_TASK).status == "Cancelled"
    # The issue's task exists once: labelling it again makes nothing new.
    again = deliver(store, github_settings, "issues", load("issues/labeled.payload.json"))
    assert again["status"] == "ignored" and "already exists" in again["detail"]


def test_a_task_made_from_an_issue_before_the_id_space_is_still_found(store: TaskStore,
                                                                       github_settings: Settings) -> None:
    store.create_task(service=SERVICE, task_id=1, agent="claude", spec={"id": 1},
                      origin={"github": {"repo": REPO, "issue": 1}})
    result = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator cancel"))
    assert result["status"] == "changed" and result["task"] == f"{SERVICE}/1"


def test_cancel_retry_and_run_commands(store: TaskStore, github_settings: Settings) -> None:
    create_from_issue(store, github_settings)
    assert deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator cancel"))["status"] == "changed"
    task = store.require_task(SERVICE, ISSUE_TASK)
    assert task.status == "Cancelled" and "github:alice" in task.status_reason
    again = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator cancel"))
    assert again["status"] == "ignored" and "already ended" in again["detail"]

    assert deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator retry"))["status"] == "changed"
    assert store.require_task(SERVICE, ISSUE_TASK).status == "Pending"
    busy = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator run"))
    assert busy["status"] == "ignored" and "already on its way" in busy["detail"]

    move(store, ISSUE_TASK, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING, Status.FAILED)
    assert deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator run"))["status"] == "changed"
    assert store.require_task(SERVICE, ISSUE_TASK).status == "Pending"

    move(store, ISSUE_TASK, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.SUCCEEDED)
    result = deliver(store, github_settings, "issue_comment",
                     comment_on_issue("/orchestrator run\nAlso fix the typo in CONTRIBUTING."))
    assert result["status"] == "changed"
    task = store.require_task(SERVICE, ISSUE_TASK)
    assert task.status == "Pending" and task.context_version == 2
    (context,) = store.contexts(SERVICE, ISSUE_TASK)
    assert "CONTRIBUTING" in context["content"] and context["file_type"] == "context"


def test_run_on_an_issue_without_a_task_creates_it(store: TaskStore, github_settings: Settings) -> None:
    result = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator run", issue=1))
    assert result["status"] == "changed" and result["task"] == f"{SERVICE}/{ISSUE_TASK}"
    assert store.require_task(SERVICE, ISSUE_TASK).origin["github"]["issue"] == 1
    other = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator cancel", issue=5))
    assert other["status"] == "ignored" and "not an issue this system owns" in other["detail"]


def test_status_command_queues_a_report_only_with_a_token(store: TaskStore, github_settings: Settings,
                                                          redis_url: str) -> None:
    create_from_issue(store, github_settings)
    assert queued(redis_url, "events") == []  # no GITHUB_TOKEN: nothing to report with
    settings = github_settings.replace(github_token="ghp_test")
    result = deliver(store, settings, "issue_comment", comment_on_issue("/orchestrator status"))
    assert result["status"] == "reported"
    assert queued(redis_url, "events") == [{"step": "orchestrator.report_status", "args": [SERVICE, ISSUE_TASK]}]


def test_commands_on_our_pull_request(store: TaskStore, github_settings: Settings) -> None:
    pr_task(store, pull_request_url=PR_URL)
    result = deliver(store, github_settings, "issue_comment", comment_on_pull_request("/orchestrator run\nplease rebase"))
    assert result["status"] == "changed" and result["task"] == f"{SERVICE}/9"
    assert store.require_task(SERVICE, 9).context_version == 2
    assert store.task_for_pull_request(f"{REPO.lower()}#2") == (SERVICE, 9)


def test_a_comment_on_someone_elses_pull_request_is_ignored(store: TaskStore, github_settings: Settings) -> None:
    pr_task(store)
    result = deliver(store, github_settings, "issue_comment", comment_on_pull_request("/orchestrator run"))
    assert result["status"] == "ignored" and "not a pull request this system owns" in result["detail"]


def test_changes_requested_starts_a_follow_up_run(store: TaskStore, github_settings: Settings) -> None:
    pr_task(store, pull_request_url=PR_URL)
    payload = load("pull_request_review/submitted.payload.json")
    payload["review"].update(state="changes_requested", body="Use a constant here.", author_association="OWNER")
    result = deliver(store, github_settings, "pull_request_review", payload)
    assert result["status"] == "changed"
    task = store.require_task(SERVICE, 9)
    assert task.status == "Pending" and task.context_version == 2
    (context,) = store.contexts(SERVICE, 9)
    assert "Use a constant here." in context["content"] and context["filename"].startswith("review-")


def test_a_review_comment_carries_file_and_line(store: TaskStore, github_settings: Settings) -> None:
    pr_task(store, pull_request_url=PR_URL)
    payload = load("pull_request_review_comment/created.payload.json")
    assert deliver(store, github_settings, "pull_request_review_comment", payload)["status"] == "changed"
    (context,) = store.contexts(SERVICE, 9)
    assert "README.md" in context["content"] and "more emoji" in context["content"]
    assert context["source"]["github"]["pull_request"] == 2


def test_our_branch_is_recognised_but_not_from_a_fork(store: TaskStore, github_settings: Settings) -> None:
    pr_task(store, task_id=3)
    payload = load("pull_request/closed.payload.json")
    payload["pull_request"]["head"]["ref"] = "task-3"
    fork = copy.deepcopy(payload)
    fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    assert deliver(store, github_settings, "pull_request", fork)["status"] == "ignored"
    assert store.require_task(SERVICE, 3).pull_request_outcome is None
    assert deliver(store, github_settings, "pull_request", payload)["status"] == "changed"
    assert store.require_task(SERVICE, 3).pull_request_outcome == "closed"


def test_merging_while_a_follow_up_runs_cancels_it_and_releases_the_workspace(
        store: TaskStore, github_settings: Settings, redis_url: str) -> None:
    pr_task(store, pull_request_url=PR_URL)
    move(store, 9, Status.PENDING, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING)
    store.update_task(SERVICE, 9, current_run="hello-world-9-v2-a1")
    drain(redis_url, "deploy")
    drain(redis_url, "coordination")
    payload = load("pull_request/closed.payload.json")
    payload["pull_request"]["merged"] = True
    result = deliver(store, github_settings, "pull_request", payload)
    assert result["status"] == "changed" and "merged" in result["detail"]
    task = store.require_task(SERVICE, 9)
    assert task.status == "Cancelled" and task.pull_request_outcome == "merged"
    assert queued(redis_url, "workspace") == [{"step": "orchestrator.cleanup_workspace", "args": [SERVICE, 9]}]
    assert queued(redis_url, "deploy") == [{"step": "orchestrator.cancel_run", "args": ["hello-world-9-v2-a1"]}]


def test_the_same_delivery_is_handled_once(store: TaskStore, github_settings: Settings) -> None:
    pr_task(store, pull_request_url=PR_URL)
    payload = load("pull_request_review_comment/created.payload.json")
    first = handle_event(store, github_settings, "d-1", "pull_request_review_comment", payload)
    second = handle_event(store, github_settings, "d-1", "pull_request_review_comment", payload)
    assert (first["status"], second["status"]) == ("changed", "duplicate")
    assert len(store.contexts(SERVICE, 9)) == 1


def test_the_payload_is_read_from_the_kept_copy(store: TaskStore, github_settings: Settings) -> None:
    # The receiver queues only the delivery id; the body waits in the store until handled.
    pr_task(store, pull_request_url=PR_URL)
    body = json.dumps(load("pull_request_review_comment/created.payload.json"))
    store.keep_pending_event("d-7", "pull_request_review_comment", body, ttl=60)
    assert handle_event(store, github_settings, "d-7", "pull_request_review_comment")["status"] == "changed"
    assert store.pending_event("d-7") is None  # handled: the copy is dropped
    assert handle_event(store, github_settings, "d-7", "pull_request_review_comment")["status"] == "duplicate"
    assert len(store.contexts(SERVICE, 9)) == 1


def test_a_payload_no_longer_kept_does_nothing(store: TaskStore, github_settings: Settings) -> None:
    before = store.list_tasks(limit=100)
    assert handle_event(store, github_settings, "d-gone", "issues")["status"] == "expired"
    assert store.list_tasks(limit=100) == before


def test_a_damaged_kept_payload_is_dropped(store: TaskStore, github_settings: Settings) -> None:
    store.keep_pending_event("d-bad", "issues", "[1, 2", ttl=60)
    assert handle_event(store, github_settings, "d-bad", "issues")["status"] == "ignored"
    assert store.pending_event("d-bad") is None and store.pending_events(queued_before=10**10) == []
    assert handle_event(store, github_settings, "d-bad", "issues")["status"] == "duplicate"


@pytest.mark.parametrize("login", [BOT, "dependabot[bot]"])
def test_bots_never_trigger(store: TaskStore, github_settings: Settings, login: str) -> None:
    create_from_issue(store, github_settings)
    result = deliver(store, github_settings, "issue_comment", comment_on_issue("/orchestrator cancel", login=login))
    assert result["status"] == "ignored"
    assert store.require_task(SERVICE, ISSUE_TASK).status == "Pending"


def test_pm_tasks_and_issue_tasks_depend_on_each_other_by_their_ids(store: TaskStore,
                                                                   github_settings: Settings) -> None:
    from orchestrator.coordination.rules import dependency_state

    store.create_task(service=SERVICE, task_id=1, agent="claude", spec={"id": 1})  # PM task 1, not done
    create_from_issue(store, github_settings)  # issue #1's task
    move(store, ISSUE_TASK, Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.RUNNING, Status.SUCCEEDED)
    # A PM task waiting on the issue's task sees it done; one waiting on PM task 3 never sees the issue.
    assert dependency_state(store, SERVICE, {"dependencies": [ISSUE_TASK]}).satisfied
    assert not dependency_state(store, SERVICE, {"dependencies": [1]}).satisfied
