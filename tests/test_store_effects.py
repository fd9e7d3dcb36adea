"""The store's intent and completion records of side effects, and its look into the queues."""

from __future__ import annotations

from orchestrator.store import TaskStore, broker


def test_an_effect_is_begun_once_completed_once_and_then_only_read(store: TaskStore) -> None:
    first = store.begin_effect("job", "web-1-v1-a1", "w1", 30, now=100.0)
    assert first.state == "new"
    # Another delivery while the first acts: busy, and the record stays the first's.
    assert store.begin_effect("job", "web-1-v1-a1", "w2", 30, now=101.0).state == "busy"
    assert store.renew_effect("job", "web-1-v1-a1", "w1", 30, now=120.0)
    assert store.begin_effect("job", "web-1-v1-a1", "w2", 30, now=140.0).state == "busy"  # renewed until 150
    assert store.complete_effect("job", "web-1-v1-a1", "w1", "web-1-v1-a1", "acted", now=141.0)
    assert not store.complete_effect("job", "web-1-v1-a1", "w2", "other", "acted")  # never written over
    done = store.begin_effect("job", "web-1-v1-a1", "w3", 30)
    assert (done.state, done.result) == ("done", "web-1-v1-a1")
    assert not store.renew_effect("job", "web-1-v1-a1", "w1", 30)


def test_a_lapsed_intent_is_stale_and_taken_over(store: TaskStore) -> None:
    assert store.begin_effect("push", "r", "dead", 5, now=100.0).state == "new"
    assert store.begin_effect("push", "r", "next", 5, now=106.0).state == "stale"
    assert store.effect("push", "r")["holder"] == "next" and store.effect("push", "r")["attempts"] == "2"
    # An intent lapsed on purpose (the act raised) is stale at once.
    assert store.renew_effect("push", "r", "next", 0, now=107.0)
    assert store.begin_effect("push", "r", "third", 5, now=107.5).state == "stale"


def test_queued_steps_finds_a_step_message_for_a_run_in_any_priority_list(store: TaskStore) -> None:
    def push(key: str, step: str, run_id: str) -> None:
        store.redis.lpush(key, broker.message("deploy", {"task": step, "argsrepr": repr([run_id])}, {}, [run_id],
                                              "{}", reply_to="r"))

    push("deploy", "orchestrator.launch_run", "web-1-v1-a10")
    push(broker.queue_keys("deploy")[2], "orchestrator.cancel_run", "web-1-v1-a2")
    push(broker.queue_keys("deploy")[3], "orchestrator.launch_run", "web-1-v1-a3")
    assert store.queued_steps("deploy", [("orchestrator.launch_run", "web-1-v1-a1"),  # a10 is not a1
                                         ("orchestrator.launch_run", "web-1-v1-a2"),  # a2's is a cancel
                                         ("orchestrator.launch_run", "web-1-v1-a3"),
                                         ("orchestrator.launch_run", "web-1-v1-a10")]) == [False, False, True, True]
    assert store.queued_any([("deploy", "orchestrator.launch_run", "web-1-v1-a3"),
                             ("workspace", "orchestrator.prepare_workspace", "web-1-v1-a3")]) == {
        ("orchestrator.launch_run", "web-1-v1-a3")}
