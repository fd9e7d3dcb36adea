"""Tasks: their records, status changes, indexes, context documents and dependency edges."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.model import Priority, Task
from orchestrator.states import Status, sources_of
from orchestrator.store.base import StoreBase
from orchestrator.store.broker import queue_key
from orchestrator.store.errors import (
    IllegalTransition,
    LeaseNotHeld,
    LimitReached,
    TaskExists,
    TaskNotFound,
)
from orchestrator.store.keys import (
    IDX_ALL,
    IDX_STATUS_PREFIX,
    SEQ_KEY,
    STATUS_CHANGES,
    STATUS_CHANGES_MAX,
    WAITING,
    contexts_key,
    dependents_key,
    fence_key,
    history_key,
    idem_key,
    idx_agent,
    idx_service,
    idx_status,
    lease_key,
    run_key,
    split_ref,
    task_key,
    task_ref,
    task_runs_key,
)
from orchestrator.store.records import Transition, decode_task, encode, encode_fields, summary_fields


class Tasks(StoreBase):
    """Tasks, their status history and indexes."""

    def create_task(
        self,
        *,
        service: str,
        task_id: int,
        agent: str,
        spec: Mapping[str, Any],
        priority: Priority | str = Priority.MEDIUM,
        actor: str = "api",
        origin: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: int = 86400,
        idempotency_value: Any = None,
        dependencies: Iterable[int] = (),
        enqueue: tuple[str, bytes | str] | None = None,
        now: float | None = None,
        trace_parent: str = "",
    ) -> Task:
        """Store a new task in Pending; raise TaskExists when (service, id) is taken.

        With an idempotency key, the key, the task and its indexes are written
        together or not at all, so a retried request finds either nothing or
        everything. `dependencies` records the reverse edges (as
        `add_dependents`) and `enqueue=(queue, message)` pushes a broker message
        (see `enqueue`) in the same atomic step: stored, linked and queued, or
        none of them.
        """
        now = time.time() if now is None else now
        member = task_ref(service, task_id)
        fields = {
            "service": service,
            "id": str(task_id),
            "agent": agent,
            "priority": Priority.parse(priority).value,
            "spec": encode(dict(spec)),
            "origin": encode(dict(origin or {})),
            "outputs": "{}",
            "status": Status.PENDING.value,
            "status_reason": "submitted",
            **summary_fields(spec),
            "context_version": "1",
            "created_at": repr(now),
            "updated_at": repr(now),
            "submitted_by": actor,
        }
        if trace_parent:
            fields["trace_parent"] = trace_parent
        idem = idem_key(idempotency_key) if idempotency_key else idem_key("-")
        ttl = idempotency_ttl if idempotency_key else 0
        value = encode(idempotency_value if idempotency_value is not None else {"task": member})
        created, _seq = self._call(
            self._create,
            keys=[
                task_key(service, task_id),
                history_key(service, task_id),
                IDX_ALL,
                idx_service(service),
                idx_agent(agent),
                idx_status(Status.PENDING.value),
                SEQ_KEY,
                idem,
                queue_key(enqueue[0]) if enqueue else task_key(service, task_id),
                *(dependents_key(service, dep) for dep in dependencies),
            ],
            args=[
                fields["status"],
                member,
                repr(now),
                actor,
                "submitted",
                ttl,
                value,
                enqueue[1] if enqueue else "",
                str(task_id),
                self.max_tasks_per_service,
                *(item for pair in fields.items() for item in pair),
            ],
            replicated=True,
        )
        if int(created) < 0:
            raise LimitReached(
                "max_tasks_per_service",
                self.max_tasks_per_service,
                f"service {service} already holds {_seq} tasks, the most allowed; none was added",
            )
        if not int(created):
            raise TaskExists(f"task {member} already exists")
        # The script wrote exactly these fields, atomically: no need to read them back.
        return decode_task({**fields, "seq": str(_seq), "history_seq": "1"})

    def get_task(self, service: str, task_id: int) -> Task | None:
        """The task's record, or None."""
        raw = self._safe(self.redis.hgetall, task_key(service, task_id))
        return decode_task(raw) if raw else None

    def get_task_with_links(self, service: str, task_id: int) -> tuple[Task | None, list[int], bool]:
        """(the task or None, ids of its dependents as `dependents_of`, whether any run was recorded), one round trip.

        What an admission reads first; three round trips were a good part of its time.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(task_key(service, task_id))
        pipe.smembers(dependents_key(service, task_id))
        pipe.zcard(task_runs_key(service, task_id))
        raw, dependents, runs = self._safe(pipe.execute)
        return (decode_task(raw) if raw else None), sorted(int(m) for m in dependents), bool(runs)

    def require_task(self, service: str, task_id: int) -> Task:
        task = self.get_task(service, task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")
        return task

    def update_task(self, service: str, task_id: int, **fields: Any) -> None:
        """Set non-status fields of an existing task (outputs, stage, ...)."""
        if "status" in fields or "status_reason" in fields:
            raise ValueError("status changes go through transition()")
        key = task_key(service, task_id)
        if self._update_existing_hash(key, {**fields, "updated_at": time.time()}) < 0:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")

    def transition(
        self,
        service: str,
        task_id: int,
        target: Status | str,
        *,
        reason: str,
        actor: str,
        expect: Status | str | None = None,
        fields: Mapping[str, Any] | None = None,
        expect_fields: Mapping[str, str] | None = None,
        run_fields: tuple[str, Mapping[str, Any]] | None = None,
        enqueue: tuple[str, bytes | str] | None = None,
        unwait: bool = False,
        wait_score: float | None = None,
        lease: tuple[str, str, int] | None = None,
        now: float | None = None,
    ) -> Transition:
        """Move the task to `target` atomically, or raise IllegalTransition.

        `expect` makes it a compare-and-set: the write happens only when the
        task is still in that status (and, with `expect_fields`, when those
        fields still hold those values; a missing field reads as '').
        `fields` are written in the same step, and so, only when the move is
        made, are `run_fields=(run id, fields)` (as `update_run`, on a run that
        exists), `enqueue=(queue, message)` (as `enqueue`), with `unwait` the
        task's removal from the admission index and with `wait_score` its
        addition (as `add_waiting`): the next step is queued, and the index
        follows, exactly when the status that asks for it is written.
        `lease=(name, holder, token)` makes the move also conditional on that
        lease still being held with that fencing token (LeaseNotHeld otherwise).
        """
        target = Status(target)
        now = time.time() if now is None else now
        allowed = ",".join(sorted(s.value for s in sources_of(target)))
        extra = encode_fields(fields or {})
        keys = [task_key(service, task_id), history_key(service, task_id)]
        args: list[Any] = [
            target.value,
            reason,
            actor,
            repr(now),
            allowed,
            Status(expect).value if expect else "",
            self.history_limit,
            f"{IDX_STATUS_PREFIX}\n{STATUS_CHANGES}\n{STATUS_CHANGES_MAX}",
            task_ref(service, task_id),
            json.dumps(extra) if extra else "{}",
            json.dumps({k: str(v) for k, v in expect_fields.items()}) if expect_fields else "{}",
        ]
        if run_fields or enqueue or unwait or wait_score is not None or lease:
            keys += [
                run_key(run_fields[0]) if run_fields else keys[0],
                queue_key(enqueue[0]) if enqueue else keys[0],
                WAITING,
            ]
            args += [
                json.dumps(encode_fields(run_fields[1])) if run_fields else "{}",
                enqueue[1] if enqueue else "",
                "1" if unwait else "",
                repr(float(wait_score)) if wait_score is not None else "",
            ]
        if lease:
            keys += [lease_key(lease[0]), fence_key(lease[0])]
            args += [lease[1], int(lease[2])]
        result = self._call(self._transition, keys=keys, args=args)
        code = int(result[0])
        if code == -1:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")
        if code == 0 and result[2] == "lease":
            raise LeaseNotHeld(f"the lease {lease[0] if lease else ''} passed to another holder")
        if code == 0:
            raise IllegalTransition(service, task_id, result[1], target.value, conflict=result[2] == "conflict")
        return Transition(service, task_id, result[1], target.value, int(result[2]))

    def history(self, service: str, task_id: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Status history, oldest first (the newest `limit` entries when given)."""
        start = -limit if limit else 0
        raw = self._safe(self.redis.lrange, history_key(service, task_id), start, -1)
        return [json.loads(item) for item in raw]

    def count_by_status(self) -> dict[str, int]:
        """How many tasks are in each status (for metrics)."""
        pipe = self.redis.pipeline(transaction=False)
        for status in Status:
            pipe.zcard(idx_status(status.value))
        counts = self._safe(pipe.execute)
        return {status.value: int(n) for status, n in zip(Status, counts)}

    def task_refs_in_status(self, *statuses: Status | str) -> list[tuple[str, int]]:
        """(service, id) of every task in the given statuses, oldest first."""
        refs: list[tuple[str, int]] = []
        for status in statuses:
            for member in self._safe(self.redis.zrange, idx_status(Status(status).value), 0, -1):
                refs.append(split_ref(member))
        return refs

    def task_fields(self, refs: Iterable[tuple[str, int]], *fields: str, batch: int = 1000) -> list[Task | None]:
        """Many tasks with only their status and the named fields read (None for a task that is gone).

        For loops over every active task (the watcher's reconcile): one round
        trip per `batch` tasks instead of one per task, and only the fields
        asked for; the others keep their defaults.
        """
        refs = list(refs)
        names = ["status", *fields]
        out: list[Task | None] = []
        for start in range(0, len(refs), batch):
            chunk = refs[start : start + batch]
            pipe = self.redis.pipeline(transaction=False)
            for service, task_id in chunk:
                pipe.hmget(task_key(service, task_id), names)
            for (service, task_id), values in zip(chunk, self._safe(pipe.execute)):
                out.append(
                    None
                    if values[0] is None
                    else decode_task({**dict(zip(names, values)), "service": service, "id": str(task_id)})
                )
        return out

    # Context documents -------------------------------------------------------

    def add_context(self, service: str, task_id: int, document: Mapping[str, Any]) -> int:
        """Append a context document and bump the context version; returns it.

        Raises TaskNotFound, or LimitReached when the task already holds `max_contexts_per_task`.
        """
        result = self._call(
            self._add_context,
            keys=[task_key(service, task_id), contexts_key(service, task_id)],
            args=[encode(dict(document)), repr(time.time()), self.max_contexts_per_task],
        )
        if int(result[0]) == -1:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")
        if int(result[0]) == -2:
            raise LimitReached(
                "max_contexts_per_task",
                self.max_contexts_per_task,
                f"task {task_ref(service, task_id)} already holds {result[1]} context documents, the most allowed",
            )
        return int(result[1])

    def contexts(self, service: str, task_id: int) -> list[dict[str, Any]]:
        """Context documents added after submission, oldest first."""
        return [json.loads(d) for d in self._safe(self.redis.lrange, contexts_key(service, task_id), 0, -1)]

    # Dependencies ------------------------------------------------------------------

    def add_dependents(self, service: str, task_id: int, dependencies: Iterable[int]) -> None:
        """Record that `task_id` waits for each of `dependencies` (the reverse edges)."""
        pipe = self.redis.pipeline(transaction=True)
        for dep in dependencies:
            pipe.sadd(dependents_key(service, dep), str(task_id))
        self._safe(pipe.execute)

    def dependents_of(self, service: str, task_id: int) -> list[int]:
        """Ids of the tasks (same service) that named `task_id` as a dependency."""
        return sorted(int(m) for m in self._safe(self.redis.smembers, dependents_key(service, task_id)))
