"""Replay every payload of the GitHub corpus through the receiver and the handler.

Each is signed and posted to the Flask app; a queued delivery is taken from
the `events` queue exactly as a worker would receive it and handled in this
process. Each must get a 2xx; the routed ones create or change exactly the
expected tasks; replaying the same delivery id changes nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from orchestrator.github.handlers import handle_event
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.github import ISSUE_TASK, REPO, SERVICE, corpus, drain, signed_headers

CORPUS = corpus()
OUR_PR = 2  # the corpus' pull requests are #2 of the repository, on branch "changes"

# file -> what the delivery does to the tasks; every other file changes nothing.
EXPECTED: dict[str, str] = {
    "issues/labeled.payload.json": "create",
    "issues/labeled.with-organization.payload.json": "create",
    "issues/opened.payload.json": "create",
    "issues/opened.with-empty-body.payload.json": "create",
    "issues/opened.with-organization.payload.json": "create",
    "issues/opened.with-transfer.payload.json": "create",
    "pull_request/closed.payload.json": "close",
    "pull_request/closed.with-organization.payload.json": "close",
    "pull_request_review_comment/created.payload.json": "context",
    "pull_request_review_comment/created.with-organization.payload.json": "context",
}


def test_the_corpus_is_complete() -> None:
    assert len(CORPUS) == 273
    assert set(EXPECTED) <= {f"{event}/{path.name}" for event, path in CORPUS}


def seed_our_pull_request(store: TaskStore) -> None:
    """Task 7 of the mapped service opened pull request #2 and succeeded."""
    store.create_task(service=SERVICE, task_id=7, agent="claude", spec={"id": 7, "title": "t"},
                      origin={"github": {"repo": REPO, "issue": 1}})
    for status in (Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.SUCCEEDED):
        store.transition(SERVICE, 7, status, reason="seed", actor="test")
    store.update_task(SERVICE, 7, outputs={"pull_request_url": f"https://github.com/{REPO}/pull/{OUR_PR}"})


def snapshot(store: TaskStore) -> dict[str, Any]:
    tasks, _ = store.list_tasks(limit=100)
    return {
        f"{t.service}/{t.id}": {
            "status": t.status, "context_version": t.context_version,
            "outcome": t.pull_request_outcome, "contexts": len(store.contexts(t.service, t.id)),
            "history": len(store.history(t.service, t.id)),
        }
        for t in tasks
    }


def expected_after(before: dict[str, Any], effect: str | None) -> dict[str, Any]:
    after = {ref: dict(state) for ref, state in before.items()}
    ours = after[f"{SERVICE}/7"]
    if effect == "create":
        after[f"{SERVICE}/{ISSUE_TASK}"] = {"status": "Pending", "context_version": 1, "outcome": None, "contexts": 0,
                                 "history": 1}
    elif effect == "close":
        ours["outcome"] = "closed"  # closed unmerged; the task had already ended, so its status stays
    elif effect == "context":
        ours.update(status="Pending", context_version=2, contexts=1, history=ours["history"] + 1)
    return after


@pytest.mark.parametrize(("event", "path"), CORPUS, ids=[f"{e}/{p.name}" for e, p in CORPUS])
def test_replay(event: str, path: Path, github_settings: Settings, store: TaskStore, redis_url: str) -> None:
    name = f"{event}/{path.name}"
    client = create_app(github_settings).test_client()
    seed_our_pull_request(store)
    before = snapshot(store)
    body = path.read_bytes()
    delivery = str(uuid.uuid4())
    headers = signed_headers(body, event, delivery)

    answer = client.post("/webhooks/github", data=body, headers=headers)
    assert 200 <= answer.status_code < 300, answer.get_json()
    result = answer.get_json()
    messages = drain(redis_url, "events")
    effect = EXPECTED.get(name)
    if effect:
        assert result["status"] == "queued", result
        assert [m["step"] for m in messages] == ["orchestrator.handle_event"]
        outcome = handle_event(store, github_settings, *messages[0]["args"])
        assert outcome["status"] == "changed", outcome
    else:
        assert result["status"] in {"ignored", "pong"}, result
        assert messages == []
        # The handler agrees with the receiver when it sees the same payload.
        assert handle_event(store, github_settings, "direct-" + delivery, event,
                            __import__("json").loads(body))["status"] == "ignored"
    assert snapshot(store) == expected_after(before, effect)

    # The same delivery again: nothing is queued and nothing changes.
    settled = snapshot(store)
    again = client.post("/webhooks/github", data=body, headers=headers)
    assert again.get_json()["status"] == ("duplicate" if effect else result["status"])
    assert drain(redis_url, "events") == []
    if effect:
        assert handle_event(store, github_settings, *messages[0]["args"])["status"] == "duplicate"
    assert snapshot(store) == settled
