"""Redis high availability on Sentinel: kill -9 of the master under a stream of submissions and webhooks.

A master, its replica and three Sentinels are real processes, and so are the
API (gunicorn), a Celery worker and the watcher. While Sentinel promotes the
replica the API answers 503 (the error envelope), never 500; nothing that got
a 202 is lost, because the API answers 202 only once the replica holds the
write (WAIT); and the same worker, watcher and API processes follow the new
master by themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store.keys import lease_key, task_key
from orchestrator.validation import ISSUE_TASK_ID_OFFSET
from orchestrator.watcher import LEASE
from tests.support.failover import HOOK_SERVICE, ClusterHandle, Traffic
from tests.support.faults import (
    FaultStack,
    assert_no_secret_leaked,
    succeeded_count,
    survived_or_restarted,
    task_body,
    wait_until,
)
from tests.support.redis_sentinel import SentinelCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    running = SentinelCluster(tmp_path / "redis").start(wait=False)  # ready before traffic: see `stack`
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def stack(tmp_path: Path, cluster: SentinelCluster) -> Iterator[FaultStack]:
    env = {
        **cluster.env(),
        "ORCHESTRATOR_GITHUB_REPOSITORIES": f"acme/shop={HOOK_SERVICE}",
        "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "2",
    }
    running = FaultStack(tmp_path, env=env, redis=ClusterHandle(cluster))
    try:
        running.up()  # while the Sentinels find the replica and each other
        cluster.wait_ready()
        yield running
    finally:
        running.down()


def test_kill_9_of_the_master_only_503s_loses_nothing_and_everyone_follows(
    stack: FaultStack, cluster: SentinelCluster
) -> None:
    pids = {name: p.proc.pid for name, p in stack.processes.items() if p.proc}
    traffic = Traffic(stack, interval=0.3)
    traffic.thread.start()
    try:
        wait_until(lambda: len(traffic.accepted("task")) >= 2 and traffic.accepted("webhook"), 30, "accepted traffic")
        old = cluster.kill_master()  # a crash: no clean shutdown
        killed_at = time.monotonic()
        new = cluster.wait_failover(old, timeout=30)
        wait_until(
            lambda: len(traffic.accepted("task", killed_at)) >= 2 and traffic.accepted("webhook", killed_at),
            30,
            "submissions accepted again on the new master",
        )
        back_at = min(a.at for a in traffic.accepted("task", killed_at) + traffic.accepted("webhook", killed_at))
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=30)
    print(f"kill -9 of the master to the first 202 on the new one: {back_at - killed_at:.2f} s")

    # During the switch: 503 in the envelope, never a 500.
    statuses = {(a.kind, a.status) for a in traffic.answers}
    assert {a.status for a in traffic.answers} <= {202, 503}, statuses
    refused = [a for a in traffic.answers if a.status == 503]
    assert refused, "no request came during the switch"
    assert all(a.body["code"] == "unavailable" and a.body["message"] for a in refused), refused[:3]

    # Nothing accepted was lost: every 202 is on the new master, which is the only Redis left.
    client = new.client()
    for answer in traffic.accepted("task"):
        assert client.exists(task_key(traffic.service(answer.ref), answer.ref)), f"task {answer.ref} was lost"

    # The same processes, following the new master by themselves (a worker may instead die of Kombu's
    # known crash only, and is started again as a supervisor would).
    for name, pid in pids.items():
        survived_or_restarted(stack, name, pid, "the failover")

    # Every accepted submission runs to its end, once (the worker consumes from the new master).
    for answer in traffic.accepted("task"):
        task = stack.wait_end(traffic.service(answer.ref), answer.ref, timeout=60)
        assert task["status"] == "Succeeded", task
        assert succeeded_count(task) == 1 and len(task["runs"]) == 1

    # Every accepted webhook delivery became its task (its repository is out of reach: cancel it).
    for answer in traffic.accepted("webhook"):
        assert answer.body["status"] == "queued", answer.body
        wait_until(
            # issues have their own id space, above Task Master's
            lambda ref=ISSUE_TASK_ID_OFFSET + answer.ref: stack.request(
                "GET", f"/api/v1/pm/tasks/{HOOK_SERVICE}/{ref}")[0] == 200,
            30,
            f"the task of delivery {answer.ref}",
        )

    # The watcher leads on the new master: its lease there is held and renewed.
    holder = client.get(lease_key(LEASE))
    assert holder, "no watcher holds the lease on the new master"
    first_ttl = client.pttl(lease_key(LEASE))
    time.sleep(1.5)
    assert client.get(lease_key(LEASE)) == holder and client.pttl(lease_key(LEASE)) > first_ttl - 1000

    stack.down()
    assert_no_secret_leaked(stack)


# The wait for a replica (WAIT), through the API ----------------------------------------------------


def submit(client: Any, task_id: int) -> Any:
    return client.post(
        "/api/v1/pm/tasks", json=task_body(task_id, "wait"), headers={"Authorization": f"Bearer {TOKEN}"}
    )


TOKEN = "wait-token"


def test_202_only_once_a_replica_holds_the_write_and_503_when_none_confirms(
    cluster: SentinelCluster, tmp_path: Path
) -> None:
    from api.app import create_app
    from orchestrator.celery_app import create_celery
    from orchestrator.celery_dispatch import CeleryDispatcher
    from orchestrator.settings import Settings

    cluster.wait_ready()
    settings = Settings.from_env(
        {
            **cluster.env(),
            "ORCHESTRATOR_API_TOKENS": TOKEN,
            "ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS": "300",
            "ORCHESTRATOR_WORKSPACE_ROOT": str(tmp_path / "ws"),
            "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        }
    )
    assert settings.redis_wait_replicas is None  # auto
    client = create_app(settings, dispatcher=CeleryDispatcher(create_celery(settings))).test_client()
    master, replica = cluster.master(), next(s for s in cluster.servers if s is not cluster.master())

    # With the replica up: the task is on the replica when the 202 comes.
    answer = submit(client, 1)
    assert answer.status_code == 202, answer.json
    assert replica.client().exists(task_key("wait", 1))

    # A replica that stops acknowledging (frozen, still connected): 503, never a 202 it cannot back.
    replica.process.send_signal(19)  # SIGSTOP
    try:
        answer = submit(client, 2)
        assert answer.status_code == 503, answer.json
        assert answer.json["code"] == "unavailable" and "replica" in answer.json["message"]
        assert answer.headers["Retry-After"]
    finally:
        replica.process.send_signal(18)  # SIGCONT
    # The write stayed on the master (and reaches the replica): the retry is deduplicated, not lost.
    assert master.client().exists(task_key("wait", 2))
    assert submit(client, 2).status_code == 409
    assert submit(client, 3).status_code == 202

    # No replica at all: nothing to promote, so nothing to wait for (auto); 202 at once.
    replica.kill()
    wait_until(lambda: not master.client().info("replication")["connected_slaves"], 10, "the master sees no replica")
    time.sleep(1.1)  # the replica count is asked at most once a second
    started = time.monotonic()
    answer = submit(client, 4)
    assert answer.status_code == 202, answer.json
    assert time.monotonic() - started < 0.3 * 2
