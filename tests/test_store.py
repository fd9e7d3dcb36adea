"""The task store against a real redis-server, including races between processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from orchestrator.model import Run, RunPhase
from orchestrator.states import Status
from orchestrator.store import (
    IllegalTransition,
    LeaseNotHeld,
    StoreUnavailable,
    TaskExists,
    TaskNotFound,
    TaskStore,
    connect,
    run_id_for,
)
from tests.support.redis_server import RedisServer

SPEC = {"id": 1, "title": "Add login", "markdown_files": [{"filename": "task.md", "content": "x"}]}


def make(store: TaskStore, service: str = "web", task_id: int = 1, agent: str = "claude", **kw):
    return store.create_task(service=service, task_id=task_id, agent=agent, spec={**SPEC, "id": task_id}, **kw)


def test_records_written_by_an_older_version_still_read(store: TaskStore) -> None:
    """Hashes as the first versions wrote them: fewer fields, priority only in the spec, '' for unset."""
    store.redis.hset("orch:task:web:3", mapping={
        "service": "web", "id": "3", "agent": "claude", "spec": '{"id": 3, "priority": "high"}', "outputs": "{}",
        "status": "Running", "status_reason": "run web-3-v1-a1 started", "context_version": "1",
        "created_at": "1700000000.0", "updated_at": "1700000005.0", "current_run": "web-3-v1-a1"})
    store.redis.hset("orch:run:web-3-v1-a1", mapping={
        "run_id": "web-3-v1-a1", "service": "web", "task_id": "3", "version": "1", "attempt": "1", "stage": "",
        "job_name": "web-3-v1-a1", "phase": "Running", "queued_at": "1700000000.0", "started_at": "",
        "finished_at": "", "exit_code": "", "failure_reason": "", "outputs": "{}"})
    store.redis.zadd("orch:task:web:3:runs", {"web-3-v1-a1": 1700000000.0})
    task = store.require_task("web", 3)
    assert (task.status, task.priority.value, task.seq, task.origin) == (Status.RUNNING, "high", 0, {})
    assert task.current_run == "web-3-v1-a1" and task.created_at == 1700000000.0
    [run] = store.list_runs("web", 3)
    assert (run.phase, run.started_at, run.exit_code, run.retryable) == (RunPhase.RUNNING, None, None, False)


def test_create_and_read_back(store: TaskStore) -> None:
    task = make(store, priority="high", origin={"github_issue": "o/r#3"})
    assert task.status == "Pending"
    assert task.status_reason == "submitted"
    assert task.context_version == 1
    assert task.spec["title"] == "Add login"
    assert task.origin == {"github_issue": "o/r#3"}
    assert store.history("web", 1) == [
        {"seq": 1, "at": pytest.approx(task.created_at), "from": None, "to": "Pending",
         "reason": "submitted", "actor": "api"}
    ]


def test_same_service_and_id_is_refused(store: TaskStore) -> None:
    make(store)
    with pytest.raises(TaskExists):
        make(store)
    make(store, service="other")  # same id in another service is another task


def test_idempotency_key_is_stored_with_the_task(store: TaskStore) -> None:
    make(store, idempotency_key="k1", idempotency_value={"answer": 1}, idempotency_ttl=60)
    assert store.get_idempotent("k1") == {"answer": 1}
    assert 0 < store.redis.ttl("orch:idem:k1") <= 60
    assert store.get_idempotent("unknown") is None


def test_legal_transition_moves_status_index_and_history(store: TaskStore) -> None:
    make(store)
    result = store.transition("web", 1, Status.QUEUED, reason="admitted", actor="admit",
                              fields={"next_run": "r1"})
    assert (result.source, result.target, result.seq) == ("Pending", "Queued", 2)
    task = store.get_task("web", 1)
    assert task.status == "Queued" and task.status_reason == "admitted" and task.next_run == "r1"
    assert store.count_by_status()["Queued"] == 1
    assert store.count_by_status()["Pending"] == 0
    assert store.task_refs_in_status("Queued") == [("web", 1)]


def test_illegal_transition_is_refused_and_not_written(store: TaskStore) -> None:
    make(store)
    with pytest.raises(IllegalTransition) as info:
        store.transition("web", 1, Status.SUCCEEDED, reason="nope", actor="test")
    assert info.value.current == "Pending" and not info.value.conflict
    assert store.get_task("web", 1).status == "Pending"
    assert len(store.history("web", 1)) == 1


def test_expect_makes_a_compare_and_set(store: TaskStore) -> None:
    make(store)
    store.transition("web", 1, "Queued", reason="", actor="t")
    with pytest.raises(IllegalTransition) as info:
        store.transition("web", 1, "Cancelled", reason="", actor="t", expect="Pending")
    assert info.value.conflict


def test_run_fields_and_message_are_written_only_with_the_move(store: TaskStore) -> None:
    make(store)
    run_id = store.create_run("web", 1, version=1, attempt=1).run_id
    store.transition("web", 1, "Queued", reason="", actor="t")
    with pytest.raises(IllegalTransition):
        store.transition("web", 1, "Launching", reason="", actor="t", expect="Pending",
                         run_fields=(run_id, {"branch": "task-1"}), enqueue=("deploy", "m-1"))
    assert store.get_run(run_id).branch == ""
    assert store.queue_depths(["deploy"]) == {"deploy": 0}
    store.transition("web", 1, "Preparing", reason="", actor="t", expect="Queued",
                     run_fields=(run_id, {"branch": "task-1", "workspace_fence": 3}), enqueue=("deploy", "m-2"))
    run = store.get_run(run_id)
    assert run.branch == "task-1" and run.workspace_fence == 3
    assert store.redis.lrange("deploy", 0, -1) == ["m-2"]
    assert store.waiting() == []
    store.transition("web", 1, "Queued", reason="", actor="t", wait_score=5)
    assert store.waiting() == [("web", 1)]
    store.transition("web", 1, "Preparing", reason="", actor="t", unwait=True)
    assert store.waiting() == []
    # A run that is gone is not brought back by the fields meant for it.
    store.transition("web", 1, "Launching", reason="", actor="t", run_fields=("web-1-v9-a1", {"phase": "x"}))
    assert store.get_run("web-1-v9-a1") is None


def test_a_move_conditioned_on_a_lease(store: TaskStore) -> None:
    make(store)
    token = store.acquire_lease("ws:web", "run-a", 30)
    with pytest.raises(LeaseNotHeld):
        store.transition("web", 1, "Queued", reason="", actor="t", lease=("ws:web", "run-a", token + 1))
    with pytest.raises(LeaseNotHeld):
        store.transition("web", 1, "Queued", reason="", actor="t", lease=("ws:web", "run-b", token))
    assert store.get_task("web", 1).status == "Pending"
    store.transition("web", 1, "Queued", reason="", actor="t", lease=("ws:web", "run-a", token))
    assert store.get_task("web", 1).status == "Queued"


def test_run_with_its_task_and_contexts_in_one_read(store: TaskStore) -> None:
    assert store.get_run_with_task("nope") == (None, None, [])
    make(store)
    store.add_context("web", 1, {"title": "more", "content": "y"})
    run_id = store.create_run("web", 1, version=2, attempt=1).run_id
    run, task, contexts = store.get_run_with_task(run_id, contexts=True)
    assert run == store.get_run(run_id) and task == store.get_task("web", 1)
    assert contexts == store.contexts("web", 1) == [{"title": "more", "content": "y"}]
    assert store.get_run_with_task(run_id)[2] == []
    store.redis.delete("orch:task:web:1")
    assert store.get_run_with_task(run_id, contexts=True) == (run, None, [])


def test_transition_of_unknown_task(store: TaskStore) -> None:
    with pytest.raises(TaskNotFound):
        store.transition("web", 99, "Queued", reason="", actor="t")


def test_history_is_bounded(redis_url: str) -> None:
    store = TaskStore(connect(redis_url), history_limit=5)
    make(store)
    for _ in range(10):
        store.transition("web", 1, "Blocked", reason="waiting", actor="t")
    history = store.history("web", 1)
    assert len(history) == 5
    assert [h["seq"] for h in history] == [7, 8, 9, 10, 11]


def test_list_newest_first_with_filters_and_cursor(store: TaskStore) -> None:
    for i in range(1, 8):
        make(store, service="web" if i % 2 else "api", task_id=i, agent="claude" if i < 5 else "codex")
    page, cursor = store.list_tasks(limit=3)
    assert [t.id for t in page] == [7, 6, 5]
    page2, cursor2 = store.list_tasks(limit=3, cursor=cursor)
    assert [t.id for t in page2] == [4, 3, 2]
    page3, cursor3 = store.list_tasks(limit=3, cursor=cursor2)
    assert [t.id for t in page3] == [1] and cursor3 is None
    web, _ = store.list_tasks(service="web", limit=10)
    assert [t.id for t in web] == [7, 5, 3, 1]
    store.transition("web", 3, "Queued", reason="", actor="t")
    queued_web, _ = store.list_tasks(service="web", status="Queued", limit=10)
    assert [t.id for t in queued_web] == [3]
    codex_web, _ = store.list_tasks(service="web", agent="codex", limit=10)
    assert [t.id for t in codex_web] == [7, 5]
    exact, cursor = store.list_tasks(service="web", limit=4)
    assert len(exact) == 4 and cursor is None


def test_context_bumps_version(store: TaskStore) -> None:
    make(store)
    assert store.add_context("web", 1, {"content": "more"}) == 2
    assert store.add_context("web", 1, {"content": "again"}) == 3
    assert store.get_task("web", 1).context_version == 3
    assert [c["content"] for c in store.contexts("web", 1)] == ["more", "again"]
    with pytest.raises(TaskNotFound):
        store.add_context("web", 2, {"content": "x"})


def test_runs_are_recorded_once_per_identity(store: TaskStore) -> None:
    make(store)
    run = store.create_run("web", 1, version=1, attempt=1, job_name="job-a", runner="kubernetes")
    again = store.create_run("web", 1, version=1, attempt=1, job_name="other")
    assert run.run_id == again.run_id == run_id_for("web", 1, 1, 1)
    assert again.job_name == "job-a"
    store.update_run(run.run_id, phase="Succeeded", exit_code=0, finished_at=time.time(),
                     outputs={"pull_request_url": "https://github.com/o/r/pull/1"})
    store.create_run("web", 1, version=2, attempt=1)
    runs = store.list_runs("web", 1)
    assert [r.version for r in runs] == [1, 2]
    assert runs[0].exit_code == 0 and runs[0].outputs["pull_request_url"].endswith("/1")


def test_update_of_missing_records_never_resurrects_them(store: TaskStore) -> None:
    with pytest.raises(TaskNotFound):
        store.update_task("web", 5, outputs={})
    assert store.get_task("web", 5) is None
    with pytest.raises(Exception):
        store.update_run("nope", phase="Running")
    assert store.get_run("nope") is None


def test_current_runs_reads_each_tasks_run_fields_in_batches(store: TaskStore) -> None:
    for task_id in (1, 2, 3):
        make(store, task_id=task_id)
    first = store.create_run("web", 1, version=1, attempt=1)
    store.update_task("web", 1, current_run=first.run_id)
    store.update_run(first.run_id, phase="Running", job_name="web-1-v1-a1", observed_reason="Running")
    store.update_task("web", 3, current_run="web-3-v1-a1")  # names a run whose record is gone
    refs = [("web", 1), ("web", 2), ("web", 3), ("web", 99)]
    rows = store.current_runs(refs, "run_id", "phase", "job_name", "started_at", batch=2)
    assert rows == [
        ("Pending", first.run_id, Run(run_id=first.run_id, phase=RunPhase.RUNNING, job_name="web-1-v1-a1")),
        ("Pending", "", None),  # no current run
        ("Pending", "web-3-v1-a1", None),
        None,  # no such task
    ]
    assert store.current_runs([]) == []


def test_delivery_dedupe(store: TaskStore) -> None:
    assert store.claim_delivery("d-1", ttl=60)
    assert not store.claim_delivery("d-1", ttl=60)
    store.release_delivery("d-1")
    assert store.claim_delivery("d-1", ttl=60)


def test_lease_with_fencing(store: TaskStore) -> None:
    first = store.acquire_lease("ws:web", "a", 0.3)
    assert first >= 1
    assert store.acquire_lease("ws:web", "b", 0.3) == 0
    assert store.acquire_lease("ws:web", "a", 0.3) == first  # re-entrant for the holder
    time.sleep(0.4)  # the holder crashed: its lease expires
    second = store.acquire_lease("ws:web", "b", 5)
    assert second > first
    assert not store.renew_lease("ws:web", "a", 5)
    assert not store.release_lease("ws:web", "a")
    assert store.release_lease("ws:web", "b")
    assert store.lease_holder("ws:web") is None


def test_unavailable_redis_raises_store_unavailable(tmp_path) -> None:
    server = RedisServer(tmp_path / "r")
    server.start()
    store = TaskStore(connect(server.url, timeout=0.5))
    make(store)
    server.stop()
    with pytest.raises(StoreUnavailable):
        store.get_task("web", 1)
    with pytest.raises(StoreUnavailable):
        store.transition("web", 1, "Queued", reason="", actor="t")
    server.start()  # no data persisted, but the same client recovers by itself
    try:
        assert store.ping()
    finally:
        server.stop()


# Races between processes -------------------------------------------------------

def _race_finish(url: str, task_ids: list[int], outcome: str, barrier, results) -> None:
    store = TaskStore(connect(url))
    barrier.wait()
    wins = []
    for task_id in task_ids:
        try:
            store.transition("race", task_id, outcome, reason=f"by {outcome}", actor=outcome, expect="Running")
            wins.append(task_id)
        except IllegalTransition:
            pass
    results.put((outcome, wins))


def test_racing_workers_exactly_one_wins(store: TaskStore, redis_url: str) -> None:
    task_ids = list(range(1, 101))
    for task_id in task_ids:
        store.create_task(service="race", task_id=task_id, agent="a", spec={})
        for target in ("Queued", "Preparing", "Launching", "Running"):
            store.transition("race", task_id, target, reason="", actor="setup")
    ctx = multiprocessing.get_context("spawn")
    outcomes = ["Succeeded", "Failed", "Cancelled", "Succeeded"]
    barrier = ctx.Barrier(len(outcomes))
    results = ctx.Queue()
    procs = [ctx.Process(target=_race_finish, args=(redis_url, task_ids, o, barrier, results)) for o in outcomes]
    for proc in procs:
        proc.start()
    collected = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    winners: dict[int, int] = {}
    for _outcome, wins in collected:
        for task_id in wins:
            winners[task_id] = winners.get(task_id, 0) + 1
    assert winners == {task_id: 1 for task_id in task_ids}
    for task_id in task_ids:
        history = store.history("race", task_id)
        assert [h["to"] for h in history][-1] == store.get_task("race", task_id).status
        assert sum(1 for h in history if h["from"] == "Running") == 1


_NEXT = {"Pending": "Queued", "Queued": "Preparing", "Preparing": "Launching", "Launching": "Running",
         "Running": "Succeeded"}


def _race_advance(url: str, count: int, name: str, barrier) -> None:
    store = TaskStore(connect(url))
    barrier.wait()
    for task_id in range(1, count + 1):
        while True:
            current = store.get_task("chain", task_id).status
            if current not in _NEXT:
                break
            try:
                store.transition("chain", task_id, _NEXT[current], reason=name, actor=name, expect=current)
            except IllegalTransition:
                continue


def test_concurrent_advancers_leave_a_history_without_gaps(store: TaskStore, redis_url: str) -> None:
    count = 40
    for task_id in range(1, count + 1):
        store.create_task(service="chain", task_id=task_id, agent="a", spec={})
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_race_advance, args=(redis_url, count, f"p{i}", barrier)) for i in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    for task_id in range(1, count + 1):
        history = store.history("chain", task_id)
        assert [h["to"] for h in history] == ["Pending", "Queued", "Preparing", "Launching", "Running", "Succeeded"]
        assert [h["seq"] for h in history] == list(range(1, 7))
        for before, after in zip(history, history[1:]):
            assert after["from"] == before["to"]


class _CountingSocket:
    """Wraps a connection's socket and counts its writes."""

    def __init__(self, sock):
        self.sock, self.writes = sock, 0

    def sendall(self, data):
        self.writes += 1
        return self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


@pytest.mark.parametrize("size", [100, 20_000, 2_000_000])
def test_a_command_with_a_large_value_is_one_write_below_the_bound(redis_url: str, size: int) -> None:
    client = connect(redis_url)
    client.ping()
    conn = client.connection_pool.get_connection()
    counting = conn._sock = _CountingSocket(conn._sock)
    client.connection_pool.release(conn)
    value = "é" * (size // 2)
    client.set("one-write", value)
    assert client.get("one-write") == value  # every byte arrived, in order
    sets = counting.writes - 1  # the GET is one write
    assert sets == (1 if size < 1 << 20 else 3)  # past the bound, redis-py's pieces as they are
    client.delete("one-write")


def test_text_is_stored_as_utf_8_not_escaped(store: TaskStore) -> None:
    """Non-ASCII text costs its UTF-8 size in Redis (escaping made an emoji 12 bytes), and reads back the same."""
    text = "Grüße 😀 " * 2000
    store.create_task(service="web", task_id=1, agent="claude", spec={**SPEC, "title": text})
    stored = store.redis.hget("orch:task:web:1", "spec")
    assert len(stored) < len(text.encode()) * 1.1
    assert store.get_task("web", 1).spec["title"] == text
    # A lone surrogate (which UTF-8 cannot hold) still stores, escaped.
    store.create_task(service="web", task_id=2, agent="claude", spec={**SPEC, "id": 2, "title": "half \ud83d pair"})
    assert store.get_task("web", 2).spec["title"] == "half \ud83d pair"
