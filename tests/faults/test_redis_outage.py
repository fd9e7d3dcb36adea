"""Redis crashes (SIGKILL) for 10 s under a steady stream of submissions and signed webhooks.

- while it is down the API answers 503 (the error envelope), never 500, and
  never 202 for something it did not store;
- the same worker processes reconnect and consume again by themselves (or die of Kombu's known
  restore crash only, and are started again as a supervisor would);
- with AOF (appendfsync always) nothing that got a 202 is lost: every accepted
  task is still there after the restart and reaches an end state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from orchestrator.github.signature import sign
from orchestrator.validation import ISSUE_TASK_ID_OFFSET
from tests.support.failover import HOOK_SERVICE, Traffic, issue_labeled
from tests.support.faults import (
    SECRETS,
    FaultStack,
    assert_no_secret_leaked,
    succeeded_count,
    survived_or_restarted,
    wait_until,
)

OUTAGE_SECONDS = 10


@pytest.fixture
def stack(tmp_path) -> Iterator[FaultStack]:
    running = FaultStack(tmp_path, env={"ORCHESTRATOR_GITHUB_REPOSITORIES": f"acme/shop={HOOK_SERVICE}"})
    try:
        running.up()
        yield running
    finally:
        running.down()


def test_redis_down_for_10s_loses_nothing_and_workers_resume(stack: FaultStack) -> None:
    workers = {name: p.proc.pid for name, p in stack.processes.items() if name.startswith("worker") and p.proc}
    traffic = Traffic(stack, interval=0.3, prefix="outage")
    traffic.thread.start()
    try:
        wait_until(lambda: traffic.accepted("task") and traffic.accepted("webhook"), 30, "accepted traffic")
        stack.redis.kill()  # a crash: no clean shutdown, no final save
        down_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS)  # the outage itself, while the traffic goes on
        stack.redis.start()
        up_at = time.monotonic()
        wait_until(lambda: len(traffic.accepted("task", up_at)) >= 2 and traffic.accepted("webhook", up_at),
                   60, "submissions accepted again after the restart")
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=30)

    # While Redis was down: 503 in the envelope, never a 500, never a 202 without a stored record.
    statuses = {(a.kind, a.status) for a in traffic.answers}
    assert {a.status for a in traffic.answers} <= {202, 503}, statuses
    refused = [a for a in traffic.answers if a.status == 503]
    assert {a.kind for a in refused} == {"task", "webhook"}, statuses
    assert all(a.body["code"] == "unavailable" and a.body["message"] for a in refused)
    assert any(down_at < a.at < up_at + 1 for a in refused)

    # The worker processes reconnected by themselves (or died of Kombu's known crash only, and are
    # started again as a supervisor would: what they held must still end below).
    for name, pid in workers.items():
        survived_or_restarted(stack, name, pid, "the outage")

    # Every accepted submission is still stored and runs to its end, once.
    for answer in traffic.accepted("task"):
        task = stack.wait_end(traffic.service(answer.ref), answer.ref, timeout=120)
        assert task["status"] == "Succeeded", task
        assert succeeded_count(task) == 1 and len(task["runs"]) == 1
    # ... including those submitted after the restart: the reconnected workers consume again.
    assert traffic.accepted("task", up_at)

    # Every accepted webhook delivery became its task (the handler ran after the restart if need be).
    for answer in traffic.accepted("webhook"):
        assert answer.body["status"] == "queued", answer.body
        task_id = ISSUE_TASK_ID_OFFSET + answer.ref  # issues have their own id space
        wait_until(lambda: stack.request("GET", f"/api/v1/pm/tasks/{HOOK_SERVICE}/{task_id}")[0] == 200, 60,
                   f"the task of delivery {answer.ref}")
        # Its repository is github.com, out of reach here: end it by cancelling.
        status, body = stack.request("POST", f"/api/v1/pm/tasks/{HOOK_SERVICE}/{task_id}/cancel",
                                     {"reason": "test"})
        assert status == 200 or (status == 409 and "already ended" in body["message"]), body
        assert stack.wait_end(HOOK_SERVICE, task_id)["status"] in {"Cancelled", "Failed"}
    # A refused delivery is not half-claimed: GitHub's redelivery of it is accepted now.
    again = next(a for a in refused if a.kind == "webhook")
    raw = json.dumps(issue_labeled(again.ref)).encode()
    status, text = stack.raw("POST", "/webhooks/github", raw, {
        "X-Hub-Signature-256": sign(raw, SECRETS["GITHUB_WEBHOOK_SECRET"]), "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": f"delivery-{again.ref}", "Content-Type": "application/json"})
    assert status == 202 and json.loads(text)["status"] == "queued", text

    stack.down()
    assert_no_secret_leaked(stack)
