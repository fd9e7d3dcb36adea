"""Lists of tasks: newest first, filtered, paged by cursor, reading summaries or whole records.

A page is a walk down one index (sorted sets of `service/id` scored by the
task's sequence number). The smallest index that the filters allow drives the
walk (ZCARD is O(1)), and the other filters are checked on a few small fields,
so neither the time nor the memory of a page grows with the number of tasks
stored or with the size of their documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from orchestrator.model import Task, TaskSummary
from orchestrator.store.base import StoreBase
from orchestrator.store.keys import IDX_ALL, TASK_KEY_PREFIX, idx_agent, idx_service, idx_status, task_key
from orchestrator.store.records import SUMMARY_FIELDS, decode_summary, decode_task, summary_fields

T = TypeVar("T")

# How many index entries a title search reads for one page at most: a rare word
# gives a short page and a cursor to go on, rather than a walk over every task.
TITLE_SCAN_MAX = 5000


class Listing(StoreBase):
    """Pages of tasks."""

    def list_tasks(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """Whole task records newest first, filtered; a page and the cursor of the next one.

        For callers that need more than a list shows (documents, outputs); a
        list for people reads `list_summaries`, which never loads a spec.
        """

        def read(members: Sequence[str]) -> list[Task | None]:
            pipe = self.redis.pipeline(transaction=False)
            for member in members:
                pipe.hgetall(task_key(*member.rsplit("/", 1)))
            return [decode_task(raw) if raw else None for raw in self._safe(pipe.execute)]

        return self._walk(read, service=service, status=status, agent=agent, limit=limit, cursor=cursor)

    def list_summaries(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        agent: str | None = None,
        title_contains: str = "",
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[TaskSummary], str | None]:
        """Task summaries newest first, filtered; only the summary fields of each task are read (one HMGET).

        With `title_contains` (ASCII letters without case) the titles are
        compared in Redis and at most TITLE_SCAN_MAX tasks are looked at for
        one page: the page may be short, and its cursor goes on. A task stored
        before summaries existed is found once a list has shown it.
        """
        needle = title_contains.strip().lower()
        if needle:
            return self._title_search(needle, service, status, agent, limit, cursor)
        return self._walk(self._read_summaries, service=service, status=status, agent=agent, limit=limit, cursor=cursor)

    def _read_summaries(self, members: Sequence[str]) -> list[TaskSummary | None]:
        """The summaries of index members, one HMGET each in one round trip (None for a task that is gone)."""
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(task_key(*member.rsplit("/", 1)), SUMMARY_FIELDS)
        rows = [dict(zip(SUMMARY_FIELDS, values)) for values in self._safe(pipe.execute)]
        self._fill_legacy_summaries(members, rows)
        return [
            decode_summary({k: v for k, v in row.items() if v is not None}) if row["status"] is not None else None
            for row in rows
        ]

    def _title_search(
        self, needle: str, service: str | None, status: str | None, agent: str | None, limit: int, cursor: str | None
    ) -> tuple[list[TaskSummary], str | None]:
        """Titles are compared inside Redis (title_scan.lua): only the matches travel, as summaries."""
        index = self._smallest_index(service, status, agent)
        found = self._call(
            self._title_scan,
            keys=[index],
            args=[
                f"({int(cursor)}" if cursor else "+inf",
                needle,
                limit,
                TITLE_SCAN_MAX,
                TASK_KEY_PREFIX,
                service or "",
                status or "",
                agent or "",
            ],
        )
        members, last = found[:-1], found[-1]
        items = [item for item in self._read_summaries(members) if item is not None]
        return items, (str(int(float(last))) if last else None)

    def _fill_legacy_summaries(self, members: Sequence[str], rows: list[dict[str, Any]]) -> None:
        """A record stored before summaries had a title: read its spec once, and keep the summary beside it."""
        legacy = [i for i, row in enumerate(rows) if row["status"] is not None and row["title"] is None]
        if not legacy:
            return
        pipe = self.redis.pipeline(transaction=False)
        for i in legacy:
            pipe.hget(task_key(*members[i].rsplit("/", 1)), "spec")
        for i, raw in zip(legacy, self._safe(pipe.execute)):
            spec = decode_task({"spec": raw}).spec if raw else {}
            fields = summary_fields(spec)
            rows[i].update(fields)
            self._update_existing_hash(task_key(*members[i].rsplit("/", 1)), fields)

    def _walk(
        self,
        read: Callable[[Sequence[str]], Sequence[T | None]],
        *,
        service: str | None,
        status: str | None,
        agent: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[T], str | None]:
        """The walk behind both lists: `read` turns index members into records (None: gone)."""
        index = self._smallest_index(service, status, agent)
        upper = f"({int(cursor)}" if cursor else "+inf"
        found: list[T] = []
        # One filter (or none) is the index itself: every member matches, so read no
        # more rows than the page shows. With more, read ahead for those that will not.
        batch = limit if sum(1 for f in (service, status, agent) if f) <= 1 else max(limit * 2, 20)
        while True:
            # One member past the batch, unread: whether the index goes on, without another round trip.
            members = self._safe(
                self.redis.zrevrangebyscore, index, upper, "-inf", start=0, num=batch + 1, withscores=True
            )
            if not members:
                return found, None
            head = members[:batch]
            records = read([member for member, _ in head])
            for position, ((_member, score), item) in enumerate(zip(head, records)):
                upper = f"({int(score)}"
                if item is None or not self._matches(item, service, status, agent):
                    continue
                found.append(item)
                if len(found) == limit:
                    return found, (upper[1:] if position + 1 < len(members) else None)
            if len(members) <= batch:
                return found, None

    def _smallest_index(self, service: str | None, status: str | None, agent: str | None) -> str:
        """The index with the fewest members among those the filters name (every task's when none)."""
        named = ((status, idx_status), (service, idx_service), (agent, idx_agent))
        candidates = [key(value) for value, key in named if value]
        if len(candidates) <= 1:
            return candidates[0] if candidates else IDX_ALL
        pipe = self.redis.pipeline(transaction=False)
        for key in candidates:
            pipe.zcard(key)
        sizes = self._safe(pipe.execute)
        return min(zip(sizes, candidates))[1]

    @staticmethod
    def _matches(item: Any, service: str | None, status: str | None, agent: str | None) -> bool:
        if service and item.service != service:
            return False
        if status and item.status != status:
            return False
        return not (agent and item.agent != agent)
