"""POST /webhooks/github: verification, validation, dedupe and queueing (real Redis)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from orchestrator.settings import Settings
from orchestrator.store import TaskStore, connect
from tests.support.github import SECRET, drain, load, queued, signed_headers
from tests.support.celery_app import point_celery_at
from tests.support.redis_server import RedisServer
from workers.app import create_celery
from orchestrator.celery_dispatch import CeleryDispatcher

URL = "/webhooks/github"


@pytest.fixture
def client(github_settings: Settings) -> FlaskClient:
    return create_app(github_settings).test_client()


def routed_body() -> bytes:
    return json.dumps(load("issues/labeled.payload.json")).encode()


def post(client: FlaskClient, body: bytes, event: str = "issues", delivery: str | None = None, **kwargs):
    headers = signed_headers(body, event, delivery, **kwargs)
    return client.post(URL, data=body, headers=headers)


def test_a_routed_delivery_is_queued_once(client: FlaskClient, redis_url: str) -> None:
    body, delivery = routed_body(), str(uuid.uuid4())
    first = post(client, body, delivery=delivery)
    assert first.status_code == 202 and first.get_json() == {"status": "queued", "delivery": delivery}
    messages = queued(redis_url, "events")
    assert [m["step"] for m in messages] == ["orchestrator.handle_event"]
    # The message names the delivery; the body is kept once, as received, in the store.
    assert messages[0]["args"] == [delivery, "issues"]
    assert TaskStore(connect(redis_url)).pending_event(delivery) == ("issues", body.decode())
    again = post(client, body, delivery=delivery)
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert len(queued(redis_url, "events")) == 1


def test_ping_and_unrouted_events(client: FlaskClient, redis_url: str) -> None:
    ping = json.dumps(load("ping/payload.json")).encode()
    assert post(client, ping, "ping").get_json()["status"] == "pong"
    star = json.dumps(load("star/created.payload.json")).encode()
    answer = post(client, star, "star")
    assert answer.status_code == 202
    assert answer.get_json()["status"] == "ignored" and "no route for star.created" in answer.get_json()["reason"]
    assert queued(redis_url, "events") == []


@pytest.mark.parametrize("header", [None, "", "sha256=" + "0" * 64, "sha1=abc", "garbage"])
def test_missing_or_wrong_signature_is_401(client: FlaskClient, redis_url: str, header: str | None) -> None:
    body = routed_body()
    headers = signed_headers(body, "issues")
    if header is None:
        del headers["X-Hub-Signature-256"]
    else:
        headers["X-Hub-Signature-256"] = header
    answer = client.post(URL, data=body, headers=headers)
    assert answer.status_code == 401 and answer.get_json()["code"] == "bad_signature"
    assert queued(redis_url, "events") == []


def test_signed_with_another_secret_or_a_changed_body_is_401(client: FlaskClient) -> None:
    body = routed_body()
    assert post(client, body, secret="not-the-secret").status_code == 401
    headers = signed_headers(body, "issues")
    assert client.post(URL, data=body + b" ", headers=headers).status_code == 401


def test_rotation_accepts_old_and_new_secret(github_settings: Settings) -> None:
    client = create_app(github_settings.replace(github_webhook_secrets=("new-secret", SECRET))).test_client()
    body = json.dumps(load("star/created.payload.json")).encode()
    assert post(client, body, "star", secret=SECRET).status_code == 202
    assert post(client, body, "star", secret="new-secret").status_code == 202
    assert post(client, body, "star", secret="retired").status_code == 401


def test_no_secret_refuses_everything_and_says_why(github_settings: Settings, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.webhooks"):
        client = create_app(github_settings.replace(github_webhook_secrets=())).test_client()
    assert "GITHUB_WEBHOOK_SECRET is not set" in caplog.text
    body = routed_body()
    answer = post(client, body)
    assert answer.status_code == 403 and answer.get_json()["code"] == "webhooks_disabled"
    # Even a body "signed" with an empty secret is refused.
    assert post(client, body, secret="").status_code == 403


@pytest.mark.parametrize(("drop", "value"), [
    ("X-GitHub-Event", None), ("X-GitHub-Delivery", None), ("X-GitHub-Event", "Issues!"),
    ("X-GitHub-Delivery", "has spaces"), ("X-GitHub-Delivery", "x" * 200),
])
def test_missing_or_invalid_headers_are_400(client: FlaskClient, redis_url: str, drop: str, value: str | None) -> None:
    body = routed_body()
    headers = signed_headers(body, "issues")
    if value is None:
        del headers[drop]
    else:
        headers[drop] = value
    answer = client.post(URL, data=body, headers=headers)
    assert answer.status_code == 400 and answer.get_json()["code"] == "missing_header"
    assert queued(redis_url, "events") == []


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "",
                                          "application/json; charset=latin-1"])
def test_non_json_content_type_is_415(client: FlaskClient, content_type: str) -> None:
    body = routed_body()
    answer = post(client, body, content_type=content_type)
    assert answer.status_code == 415


def test_json_content_type_variants_are_accepted(client: FlaskClient) -> None:
    body = json.dumps(load("star/created.payload.json")).encode()
    for content_type in ("application/json; charset=utf-8", "application/vnd.github+json"):
        assert post(client, body, "star", content_type=content_type).status_code == 202


def test_a_body_over_the_limit_is_413(client: FlaskClient, github_settings: Settings, redis_url: str) -> None:
    limit = github_settings.webhook_max_bytes
    assert limit == 2 * 1024 * 1024  # the default: not GitHub's 25 MB (#16 finding 14)
    body = b" " * (limit + 1)
    answer = post(client, body)
    assert answer.status_code == 413 and answer.get_json()["code"] == "payload_too_large"
    assert queued(redis_url, "events") == []


def test_a_chunked_body_over_the_limit_is_413(github_settings: Settings) -> None:
    client = create_app(github_settings.replace(webhook_max_bytes=1000)).test_client()
    body = b" " * 1001
    headers = signed_headers(body, "issues")
    # No Content-Length: the limit is enforced while reading.
    answer = client.post(URL, input_stream=__import__("io").BytesIO(body), headers=headers,
                         environ_overrides={"wsgi.input_terminated": True})
    assert answer.status_code == 413


def test_a_body_at_the_limit_is_read(github_settings: Settings) -> None:
    payload = json.dumps(load("star/created.payload.json")).encode()
    client = create_app(github_settings.replace(webhook_max_bytes=len(payload))).test_client()
    assert post(client, payload, "star").status_code == 202


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"action": "labeled",', "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"a": "\xff\xfe"}', "not valid UTF-8"),
    (b"[1, 2, 3]", "must be an object"),
    (b'"text"', "must be an object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    (b'{"a": NaN', "not valid JSON"),
])
def test_malformed_bodies_are_400(client: FlaskClient, redis_url: str, body: bytes, fragment: str) -> None:
    answer = post(client, body)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["code"] == "malformed_body" and fragment in answer.get_json()["message"]
    assert queued(redis_url, "events") == []


def test_redis_down_is_503_and_a_redelivery_is_processed(github_settings: Settings, own_redis: RedisServer) -> None:
    settings = github_settings.replace(redis_url=own_redis.url)
    point_celery_at(own_redis.url)
    client = create_app(settings).test_client()
    body, delivery = routed_body(), str(uuid.uuid4())
    own_redis.stop()
    answer = post(client, body, delivery=delivery)
    assert answer.status_code == 503 and answer.get_json()["code"] == "unavailable"
    assert answer.headers["Retry-After"]
    own_redis.start()
    # GitHub's manual redelivery keeps the delivery id: it must be queued, not "duplicate".
    again = post(client, body, delivery=delivery)
    assert again.status_code == 202 and again.get_json()["status"] == "queued"
    assert len(queued(own_redis.url, "events")) == 1


def test_a_claim_is_released_when_queueing_fails(github_settings: Settings, redis_url: str, tmp_path) -> None:
    # The store answers but the broker does not: the claim must not outlive the failed attempt.
    unanswered = CeleryDispatcher(create_celery(github_settings.replace(redis_url="redis://127.0.0.1:1/0")))
    client = create_app(github_settings, dispatcher=unanswered).test_client()
    body, delivery = routed_body(), str(uuid.uuid4())
    assert post(client, body, delivery=delivery).status_code == 503
    client = create_app(github_settings, dispatcher=CeleryDispatcher(create_celery(github_settings))).test_client()
    assert post(client, body, delivery=delivery).get_json()["status"] == "queued"
    assert [m["args"][0] for m in drain(redis_url, "events")] == [delivery]
