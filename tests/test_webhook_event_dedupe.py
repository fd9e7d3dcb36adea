"""A signed event sent again under a new X-GitHub-Delivery (a replay) is the same event: acted on once.

Real Redis, the Flask app, real corpus payloads; the queued delivery is handled
in-process as a worker would.
"""

from __future__ import annotations

import json
import uuid

from flask.testing import FlaskClient

from api.app import create_app
from orchestrator.github.handlers import handle_event
from orchestrator.github.routing import event_identity
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.github import (
    ISSUE_TASK,
    SERVICE,
    drain,
    load,
    signed_headers,
)


def run_comment() -> bytes:
    payload = load("issue_comment/created.payload.json")
    payload["comment"].update(body="/orchestrator run", author_association="MEMBER")
    payload["comment"]["user"]["login"] = payload["sender"]["login"] = "alice"
    return json.dumps(payload).encode()


def post(client: FlaskClient, body: bytes, event: str, delivery: str):
    return client.post("/webhooks/github", data=body, headers=signed_headers(body, event, delivery))


def test_a_replayed_run_comment_under_a_new_delivery_starts_nothing(github_settings: Settings, store: TaskStore,
                                                                    redis_url: str) -> None:
    client = create_app(github_settings).test_client()
    body = run_comment()
    first = post(client, body, "issue_comment", str(uuid.uuid4()))
    assert first.status_code == 202 and first.get_json()["status"] == "queued"
    (message,) = drain(redis_url, "events")
    assert handle_event(store, github_settings, *message["args"])["status"] == "changed"
    task = store.require_task(SERVICE, ISSUE_TASK)
    history = len(store.history(SERVICE, ISSUE_TASK))
    # Let the task end, so that a second `run` would start it again.
    for status in (Status.QUEUED, Status.PREPARING, Status.LAUNCHING, Status.FAILED):
        store.transition(SERVICE, ISSUE_TASK, status, reason="test", actor="test")
    settled = store.require_task(SERVICE, ISSUE_TASK)

    replay = post(client, body, "issue_comment", str(uuid.uuid4()))
    assert replay.status_code == 200, replay.get_json()
    assert replay.get_json()["status"] == "duplicate" and "another delivery" in replay.get_json()["reason"]
    assert drain(redis_url, "events") == []
    assert store.require_task(SERVICE, ISSUE_TASK) == settled and settled.status == "Failed"
    assert task.created_at == settled.created_at and len(store.history(SERVICE, ISSUE_TASK)) == history + 4


def test_a_replayed_review_under_a_new_delivery_is_a_duplicate(github_settings: Settings, redis_url: str) -> None:
    client = create_app(github_settings).test_client()
    payload = load("pull_request_review/submitted.payload.json")
    payload["review"].update(state="changes_requested", author_association="OWNER")
    body = json.dumps(payload).encode()
    assert post(client, body, "pull_request_review", str(uuid.uuid4())).get_json()["status"] == "queued"
    assert post(client, body, "pull_request_review", str(uuid.uuid4())).get_json()["status"] == "duplicate"
    assert len(drain(redis_url, "events")) == 1


def test_a_new_comment_with_the_same_text_is_a_new_event(github_settings: Settings, redis_url: str) -> None:
    client = create_app(github_settings).test_client()
    payload = json.loads(run_comment())
    assert post(client, json.dumps(payload).encode(), "issue_comment", str(uuid.uuid4())).status_code == 202
    payload["comment"]["id"] += 1
    assert post(client, json.dumps(payload).encode(), "issue_comment", str(uuid.uuid4())).status_code == 202
    assert len(drain(redis_url, "events")) == 2


def test_githubs_own_redelivery_after_an_outage_still_gets_through(github_settings: Settings, store: TaskStore,
                                                                   redis_url: str) -> None:
    """The event was claimed, then queueing failed: the same delivery id again must be processed."""
    body, delivery = run_comment(), str(uuid.uuid4())
    identity = event_identity("issue_comment", json.loads(body))
    assert identity and store.claim_event(identity, delivery, 60)
    answer = post(create_app(github_settings).test_client(), body, "issue_comment", delivery)
    assert answer.status_code == 202 and answer.get_json()["status"] == "queued"


def test_event_identity_is_pure() -> None:
    comment = load("issue_comment/created.payload.json")
    assert event_identity("issue_comment", comment) == f"issue_comment.created:{comment['comment']['id']}"
    review = load("pull_request_review/submitted.payload.json")
    assert event_identity("pull_request_review", review) == f"pull_request_review.submitted:{review['review']['id']}"
    # Creating a task from an issue is idempotent by itself: no identity needed (and the benchmarks'
    # deliveries of one payload under many ids stay distinct deliveries).
    assert event_identity("issues", load("issues/labeled.payload.json")) is None
    assert event_identity("issue_comment", {"action": "created", "comment": {"id": True}}) is None
    assert event_identity("star", load("star/created.payload.json")) is None
