"""What the console shows, read through the JSON API's own views (api/tasks.py).

Every record reaches a page as the API's JSON would show it (`task_summary`,
`run_view`, the full task view), so a change in how the store decodes tasks
and runs reaches the console through the same functions as the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from api import tasks as api_tasks
from orchestrator.settings import Settings
from orchestrator.store import TaskStore, split_ref, task_ref
from orchestrator.usage.totals import run_usage

QUEUES = ("events", "coordination", "workspace", "deploy")


def store() -> TaskStore:
    return current_app.extensions["orchestrator"].store()


def settings() -> Settings:
    return current_app.extensions["orchestrator"].settings


def list_query(args: Mapping[str, str]) -> dict[str, Any]:
    """The list filters, validated by the API's own schema (ApiError with field errors)."""
    return api_tasks._load("list", {k: v for k, v in args.items() if v != "" and k != "q"})


# What a tasks row shows of the latest run: read alone (never the run's prompt or inputs).
ROW_RUN_FIELDS = ("phase", "outcome", "usage", "pull_request_url")


def latest_runs(summaries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The current (latest) run of each task, its outcome, cost and pull request, by task url."""
    wanted = [(s["url"], s["current_run"]) for s in summaries if s.get("current_run")]
    if not wanted:
        return {}
    runs = store().get_runs([run_id for _, run_id in wanted], *ROW_RUN_FIELDS)
    return {
        url: {
            "outcome": run.outcome.value if run.outcome else None,
            "usage": run_usage(run),
            "pull_request_url": run.pull_request_url or None,
        }
        for (url, _), run in zip(wanted, runs, strict=True)
        if run
    }


def task_page(query: Mapping[str, Any], text: str) -> tuple[list[dict[str, Any]], str | None]:
    """One page of task summaries, newest first, with the title filter applied (summary fields only)."""
    items, cursor = store().list_summaries(
        service=query.get("service"),
        status=query.get("status"),
        agent=query.get("agent"),
        title_contains=text,
        limit=query["limit"],
        cursor=query.get("cursor"),
    )
    return [api_tasks.task_summary(t) for t in items], cursor


def full_view(service: str, task_id: int) -> dict[str, Any]:
    """The task exactly as GET /api/v1/pm/tasks/<service>/<id> answers (TaskNotFound when absent)."""
    return api_tasks._full_view(store(), service, task_id)


def contexts(service: str, task_id: int) -> list[dict[str, Any]]:
    return store().contexts(service, task_id)


def statuses(refs: list[tuple[str, int]]) -> dict[str, dict[str, Any]]:
    """Status, reason and last change of many tasks in one round trip, by `service/id`."""
    rows = store().task_fields(refs, "status_reason", "updated_at")
    out: dict[str, dict[str, Any]] = {}
    for (service, task_id), row in zip(refs, rows, strict=True):
        if row is None:
            continue
        out[task_ref(service, task_id)] = {
            "ref": task_ref(service, task_id),
            "status": row.status.value,
            "reason": row.status_reason,
            "updated_at": api_tasks._iso(row.updated_at),
        }
    return out


def graph_neighbours(view: Mapping[str, Any]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(dependencies, dependents) of a task as (id, status); status '' for a task not stored."""
    service = view["service_name"]
    deps = [int(d) for d in view.get("dependencies") or []]
    dependents = store().dependents_of(service, view["id"])
    known = statuses([(service, i) for i in deps + dependents])

    def status(task_id: int) -> str:
        return known.get(task_ref(service, task_id), {}).get("status", "")

    return [(d, status(d)) for d in deps], [(d, status(d)) for d in dependents]


def parse_ref(ref: str) -> tuple[str, int] | None:
    try:
        service, task_id = split_ref(ref)
        return api_tasks._service(service), int(task_id)
    except Exception:  # noqa: BLE001 - a malformed ref from the page is skipped, never an error
        return None


def services_overview() -> dict[str, Any]:
    """Active runs against the caps, waiting tasks and queue depths."""
    st = store()
    total, per_service = st.slot_counts()
    waiting = st.waiting()
    waiting_per: dict[str, int] = {}
    for service, _ in waiting:
        waiting_per[service] = waiting_per.get(service, 0) + 1
    names = sorted(set(per_service) | set(waiting_per))
    return {
        "active": total,
        "max_active": settings().max_active_runs,
        "max_per_service": settings().max_runs_per_service,
        "services": [{"name": n, "active": per_service.get(n, 0), "waiting": waiting_per.get(n, 0)} for n in names],
        "queues": st.queue_depths(QUEUES),
        "waiting": len(waiting),
    }


def age(iso: str | None, now: datetime | None = None) -> str:
    """'3m', '2h', '5d': how long ago an ISO time was."""
    if not iso:
        return ""
    seconds = ((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds()
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    finish = datetime.fromisoformat(end) if end else datetime.now(UTC)
    seconds = max(0, int((finish - datetime.fromisoformat(start)).total_seconds()))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds}s"
