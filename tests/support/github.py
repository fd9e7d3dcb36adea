"""Helpers for the GitHub tests: the replay corpus, signed requests, what sits in a queue."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import redis

from orchestrator.github.signature import sign
from orchestrator.validation import issue_task_id

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret"
REPO = "Codertocat/Hello-World"
SERVICE = "hello-world"
BOT = "orchestrator-bot"
ISSUE_TASK = issue_task_id(1)  # the task made from issue #1 of the corpus (the issues' own id space)


def fixtures_dir() -> Path:
    """The replay corpus: `<repo>/../shared/fixtures/github-webhooks`, else the machine's shared folder."""
    for candidate in (REPO_ROOT.parent / "shared" / "fixtures" / "github-webhooks",
                      Path("/work/shared/fixtures/github-webhooks")):
        if candidate.is_dir():
            return candidate
    raise AssertionError("the GitHub webhook corpus (shared/fixtures/github-webhooks) is missing beside the repository")


def corpus() -> list[tuple[str, Path]]:
    """(event, file) for every payload of the corpus, sorted."""
    root = fixtures_dir()
    return sorted((path.parent.name, path) for path in root.glob("*/*.json"))


def load(event_file: str) -> dict[str, Any]:
    """One payload by `event/file` name."""
    return json.loads((fixtures_dir() / event_file).read_text())


def signed_headers(body: bytes, event: str, delivery: str | None = None, *, secret: str = SECRET,
                   content_type: str = "application/json") -> dict[str, str]:
    return {
        "X-Hub-Signature-256": sign(body, secret),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": content_type,
    }


def queued(redis_url: str, queue: str) -> list[dict[str, Any]]:
    """The Celery messages waiting in a queue, decoded to {step, args}."""
    client = redis.Redis.from_url(redis_url)
    try:
        found = []
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            body = message["body"]
            if message["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args, _kwargs, _embed = json.loads(body)
            found.append({"step": message["headers"]["task"], "args": args})
        return list(reversed(found))  # LPUSH: the oldest is last
    finally:
        client.close()


def drain(redis_url: str, queue: str) -> list[dict[str, Any]]:
    """Take every message out of a queue (oldest first)."""
    messages = queued(redis_url, queue)
    client = redis.Redis.from_url(redis_url)
    client.delete(queue)
    client.close()
    return messages
