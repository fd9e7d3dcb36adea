"""Traffic for the Redis outage and failover tests and the failover benchmark: submissions and signed webhooks, every answer kept."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.github.signature import sign
from tests.support.faults import SECRETS, FaultStack, task_body
from tests.support.redis_sentinel import SentinelCluster
from tests.support.redis_server import RedisServer

HOOK_SERVICE = "hooks"
SERVICES = 4


class ClusterHandle(RedisServer):
    """What the Stack starts and stops as "its Redis": here, the whole Sentinel cluster (already started)."""

    def __init__(self, cluster: SentinelCluster):
        self.cluster = cluster
        self.process = object()  # running: the stack does not start it again
        self.port = 0

    @property
    def url(self) -> str:
        return self.cluster.url

    def stop(self) -> None:
        self.cluster.stop()


@dataclass
class Answer:
    kind: str  # "task" or "webhook"
    ref: int
    status: int
    body: Any
    at: float  # when the answer came
    sent: float  # when the request was sent: an answer to one sent before a kill says nothing of after it


def issue_labeled(number: int) -> dict[str, Any]:
    """An `issues` `labeled` delivery that creates a task (mapped repository, trigger label)."""
    return {
        "action": "labeled",
        "label": {"name": "orchestrator"},
        "issue": {
            "number": number,
            "title": f"Issue {number}",
            "body": "Fix it.",
            "state": "open",
            "labels": [{"name": "orchestrator"}],
            "author_association": "OWNER",
            "html_url": f"https://github.com/acme/shop/issues/{number}",
        },
        "repository": {"full_name": "acme/shop", "default_branch": "main"},
        "sender": {"login": "pm", "type": "User"},
    }


class Traffic:
    """Submissions and webhooks, alternating, until stopped; every answer recorded."""

    def __init__(self, stack: FaultStack, interval: float = 0.2, prefix: str = "ha"):
        self.stack, self.interval, self.prefix = stack, interval, prefix
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            sent = time.monotonic()
            status, body = self.stack.request(
                "POST", "/api/v1/pm/tasks", task_body(n, self.service(n)), timeout=15
            )
            self.answers.append(Answer("task", n, status, body, time.monotonic(), sent))
            raw = json.dumps(issue_labeled(n)).encode()
            sent = time.monotonic()
            status, text = self.stack.raw(
                "POST",
                "/webhooks/github",
                raw,
                {
                    "X-Hub-Signature-256": sign(raw, SECRETS["GITHUB_WEBHOOK_SECRET"]),
                    "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": f"delivery-{n}",
                    "Content-Type": "application/json",
                },
                timeout=15,
            )
            self.answers.append(
                Answer("webhook", n, status, json.loads(text) if text else None, time.monotonic(), sent)
            )
            self.stop.wait(self.interval)

    def service(self, ref: int) -> str:
        """The service submission `ref` went to (spread over SERVICES)."""
        return f"{self.prefix}-{ref % SERVICES}"

    def accepted(self, kind: str, after: float = 0.0) -> list[Answer]:
        """Answers 202 of `kind` to requests sent after `after`."""
        return [a for a in list(self.answers) if a.kind == kind and a.status == 202 and a.sent > after]
