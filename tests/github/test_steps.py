"""A real Celery worker on the `events` queue: webhook in, task out, status comment on (fake) GitHub."""

from __future__ import annotations

import json

from api.app import create_app
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.fake_github import FakeGitHub
from tests.support.github import ISSUE_TASK, REPO, SERVICE, load, signed_headers
from tests.support.wait import wait_for


def test_a_worker_handles_events_and_reports_back(github_settings: Settings, store: TaskStore,
                                                  worker_factory) -> None:
    github = FakeGitHub().start()
    try:
        worker = worker_factory(queues=("events",), env={
            "ORCHESTRATOR_GITHUB_REPOSITORIES": f"{REPO}={SERVICE}",
            "ORCHESTRATOR_GITHUB_TRIGGER_LABEL": "bug",
            "GITHUB_TOKEN": "ghp_worker_token",
            "ORCHESTRATOR_GITHUB_API_URL": github.url,
        })
        client = create_app(github_settings).test_client()

        body = json.dumps(load("issues/labeled.payload.json")).encode()
        answer = client.post("/webhooks/github", data=body, headers=signed_headers(body, "issues"))
        assert answer.status_code == 202 and answer.get_json()["status"] == "queued"
        task = wait_for(lambda: store.get_task(SERVICE, ISSUE_TASK), what="the task")
        assert task.origin["github"] == {"repo": REPO, "issue": 1, "url": f"https://github.com/{REPO}/issues/1"}
        comment = wait_for(lambda: next(iter(github.comments.values()), None), what="the status comment")
        assert comment["issue"] == 1 and "Pending" in comment["body"]

        cancel = load("issue_comment/created.payload.json")
        cancel["comment"]["body"] = "/orchestrator cancel"
        body = json.dumps(cancel).encode()
        assert client.post("/webhooks/github", data=body,
                           headers=signed_headers(body, "issue_comment")).status_code == 202
        wait_for(lambda: store.require_task(SERVICE, ISSUE_TASK).status == "Cancelled", what="the cancellation")
        wait_for(lambda: "Cancelled" in comment["body"], what="the edited comment")
        assert len(github.comments) == 1
        assert "ghp_worker_token" not in worker.log()
    finally:
        github.stop()
