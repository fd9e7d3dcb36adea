"""Retention against a real redis-server: ended tasks older than ORCHESTRATOR_RETENTION_DAYS go, with all they hold."""

from __future__ import annotations

import time

from orchestrator.coordination.retention import expire_ended
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore

DAY = 86400.0
SPEC = {"title": "t", "description": "d"}


def _ended(store: TaskStore, service: str, task_id: int, *, at: float, status: Status = Status.FAILED,
           dependencies: tuple[int, ...] = ()) -> None:
    store.create_task(service=service, task_id=task_id, agent="claude", spec=SPEC, dependencies=dependencies, now=at)
    store.create_run(service, task_id, version=1, attempt=1, now=at)
    store.add_context(service, task_id, {"title": "more", "body": "x"})
    path = [Status.QUEUED, Status.PREPARING, Status.LAUNCHING] if status is Status.SUCCEEDED else []
    for step in [*path, status]:
        store.transition(service, task_id, step, reason="ended", actor="test", now=at)


def _keys(store: TaskStore, service: str, task_id: int) -> list[str]:
    return sorted(k for k in store.redis.scan_iter(f"orch:*{service}*{task_id}*"))


def test_an_old_ended_task_goes_with_its_runs_history_contexts_and_index_entries(
        store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 31 * DAY)
    assert _keys(store, "shop", 1)  # task, history, runs, run, contexts
    assert expire_ended(store, settings, now=now) == ["shop/1"]
    assert store.get_task("shop", 1) is None
    assert _keys(store, "shop", 1) == []
    assert store.list_tasks(service="shop")[0] == []
    assert store.count_by_status().get("Failed", 0) == 0
    # Nothing left in any index.
    for key in store.redis.scan_iter("orch:idx:*"):
        assert "shop/1" not in store.redis.zrange(key, 0, -1)


def test_young_ended_and_old_active_tasks_are_kept(store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 29 * DAY, status=Status.SUCCEEDED)
    store.create_task(service="shop", task_id=2, agent="claude", spec=SPEC, now=now - 90 * DAY)  # still Pending
    assert expire_ended(store, settings, now=now) == []
    assert store.get_task("shop", 1) is not None and store.get_task("shop", 2) is not None
    # Every ended status qualifies once old enough.
    assert expire_ended(store, settings, now=now + 2 * DAY) == ["shop/1"]


def test_a_task_an_unfinished_task_depends_on_is_kept_until_that_one_ends(
        store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 40 * DAY, status=Status.SUCCEEDED)
    store.create_task(service="shop", task_id=2, agent="claude", spec=SPEC, dependencies=(1,), now=now - 40 * DAY)
    assert expire_ended(store, settings, now=now) == []
    store.transition("shop", 2, Status.CANCELLED, reason="cancelled", actor="pm", now=now - 35 * DAY)
    assert sorted(expire_ended(store, settings, now=now)) == ["shop/1", "shop/2"]


def test_a_task_retried_after_it_was_read_is_kept(store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 40 * DAY)
    cutoff = now - 30 * DAY
    assert store.ended_before(cutoff) == [("shop", 1)]
    store.transition("shop", 1, Status.PENDING, reason="retry", actor="pm")  # lands between the read and the delete
    assert store.purge_task("shop", 1, cutoff) is False
    assert store.get_task("shop", 1) is not None


def test_zero_keeps_forever(store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 4000 * DAY)
    assert expire_ended(store, settings.replace(retention_days=0), now=now) == []
    assert store.get_task("shop", 1) is not None


def test_the_pull_request_link_of_a_deleted_task_goes_too(store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 40 * DAY, status=Status.SUCCEEDED)
    store.update_task("shop", 1, outputs={"pull_request_url": "https://github.com/acme/shop/pull/9"})
    store.link_pull_request("acme/shop#9", "shop", 1)
    # update_task counts as a change: the task is kept 30 days from it.
    assert expire_ended(store, settings, now=now) == []
    assert expire_ended(store, settings, now=now + 31 * DAY) == ["shop/1"]
    assert store.task_for_pull_request("acme/shop#9") is None


def test_other_services_and_tasks_are_untouched(store: TaskStore, settings: Settings) -> None:
    now = time.time()
    _ended(store, "shop", 1, at=now - 40 * DAY)
    _ended(store, "shop", 11, at=now - 1 * DAY)
    _ended(store, "billing", 1, at=now - 1 * DAY)
    assert expire_ended(store, settings, now=now) == ["shop/1"]
    assert store.get_task("shop", 11) is not None and store.get_task("billing", 1) is not None
    assert len(store.list_runs("shop", 11)) == 1 and len(store.contexts("billing", 1)) == 1


def test_the_watchers_coordination_pass_deletes_tasks_past_retention(
        store: TaskStore, kube_settings: Settings, kube_runner) -> None:
    from orchestrator.watcher import Watcher
    from tests.support.runs import Sent

    _ended(store, "shop", 1, at=time.time() - 31 * DAY)
    _ended(store, "shop", 2, at=time.time())
    Watcher(store, kube_settings, kube_runner, send=Sent()).coordinate()
    assert store.get_task("shop", 1) is None and store.get_task("shop", 2) is not None
