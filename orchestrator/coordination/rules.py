"""Coordination rules: dependencies (and their cycles) and the admission order.

Pure functions, plus a few that only read the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.model import Priority, Status

if TYPE_CHECKING:
    from orchestrator.store import TaskStore


# Dependencies ------------------------------------------------------------------------


def dependency_ids(spec: Mapping[str, Any]) -> list[int]:
    """The task ids a spec depends on, deduplicated, in the order given.

    Task Master writes them as integers; numeric strings are accepted too.
    Anything else (a subtask reference like "3.1") is not a task of ours and
    is ignored here; the API refuses it at submission.
    """
    found: list[int] = []
    for raw in spec.get("dependencies") or ():
        if isinstance(raw, bool):
            continue
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and raw.strip().isdigit():
            value = int(raw.strip())
        else:
            continue
        if value not in found:
            found.append(value)
    return found


UNKNOWN = "unknown"


@dataclass(frozen=True)
class DependencyState:
    """Where a task's dependencies stand: each dependency id with its status (or 'unknown')."""

    statuses: tuple[tuple[int, str], ...]

    @property
    def satisfied(self) -> bool:
        return all(status == Status.SUCCEEDED.value for _, status in self.statuses)

    @property
    def failed(self) -> list[int]:
        """Dependencies that ended without success (Failed or Cancelled)."""
        return [dep for dep, status in self.statuses if status in (Status.FAILED.value, Status.CANCELLED.value)]

    @property
    def waiting_for(self) -> list[tuple[int, str]]:
        return [(dep, status) for dep, status in self.statuses if status != Status.SUCCEEDED.value]

    def reason(self) -> str:
        """One line naming what the task waits for, e.g. 'waiting for dependencies: 3, 7 (unknown task)'."""
        if self.satisfied:
            return "dependencies succeeded"
        failed = self.failed
        parts = []
        for dep, status in self.waiting_for:
            # Only lasting facts are named; a dependency's progress (Queued,
            # Running...) would be stale by the time anyone reads it.
            if status == UNKNOWN:
                parts.append(f"{dep} (unknown task)")
            elif dep in failed:
                parts.append(f"{dep} ({status})")
            else:
                parts.append(str(dep))
        prefix = "dependency failed or cancelled; waiting for" if failed else "waiting for dependencies:"
        return f"{prefix} {', '.join(parts)}"


def dependency_state(store: TaskStore, service: str, spec: Mapping[str, Any]) -> DependencyState:
    """Read the status of each dependency (same service); unknown ids wait for a task not yet submitted."""
    statuses: list[tuple[int, str]] = []
    for dep in dependency_ids(spec):
        task = store.get_task(service, dep)
        statuses.append((dep, task.status.value if task else UNKNOWN))
    return DependencyState(tuple(statuses))


def find_cycle(store: TaskStore, service: str, task_id: int, dependencies: Iterable[int]) -> list[int] | None:
    """The dependency cycle `task_id` would close with these dependencies, e.g. [3, 5, 3]; None when there is none.

    Walks the stored specs of the same service. Unknown ids end a path (they
    may close a cycle later, and are checked when they are submitted).
    """
    deps_of: dict[int, list[int]] = {task_id: list(dependencies)}

    def edges(node: int) -> list[int]:
        if node not in deps_of:
            task = store.get_task(service, node)
            deps_of[node] = dependency_ids(task.spec) if task else []
        return deps_of[node]

    # Iterative depth-first search from task_id, keeping the path to report it.
    path: list[int] = [task_id]
    iters = [iter(edges(task_id))]
    done: set[int] = set()
    while iters:
        nxt = next(iters[-1], None)
        if nxt is None:
            done.add(path.pop())
            iters.pop()
            continue
        if nxt == task_id:
            return [*path, task_id]
        if nxt in done or nxt in path:
            continue  # a cycle not through task_id was refused when it formed
        path.append(nxt)
        iters.append(iter(edges(nxt)))
    return None


def format_cycle(cycle: Iterable[int]) -> str:
    return " -> ".join(str(n) for n in cycle)


# Admission order ----------------------------------------------------------------------

_RANK_SPAN = 1e12  # more tasks than that will never be submitted; scores stay exact doubles


def admission_score(
    priority: Priority | str | None, seq: int, created_at: float | None = None, ageing: float = 0.0
) -> float:
    """Lower is admitted first.

    With `ageing` seconds per priority level (and the task's `created_at`): the
    submission time, less `ageing` for each level above `medium` (more for each
    below), so a higher priority goes first unless a lower one has waited that
    much longer; nothing waits for ever behind a stream of urgent work. Without:
    strict priorities, oldest (submission order) first within one.
    """
    rank = Priority.parse(priority).rank
    if ageing > 0 and created_at is not None:
        return float(created_at) + (rank - Priority.MEDIUM.rank) * ageing
    return rank * _RANK_SPAN + seq
