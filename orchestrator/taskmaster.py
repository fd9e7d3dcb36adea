"""Task Master files: reading them, rendering task.md, and building the API's submission body.

Pure functions only; the command line calls them and sends the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.model import PRIORITIES


class TaskFileError(ValueError):
    """A Task Master file that cannot be read or used: the message says what and how to fix it."""


ACCEPTANCE_MARKER = re.compile(r"ACCEPTANCE\s+CRITERIA\s*:", re.IGNORECASE)

# The Task Master statuses the API keeps as `submitted_status`; others are left to its default.
TASKMASTER_STATUSES = ("pending", "in-progress", "done", "review", "deferred", "cancelled", "blocked")


def load_tasks(path: Path, *, tag: str | None = None) -> list[dict[str, Any]]:
    """The tasks of a Task Master file: `{"master": {"tasks": [...]}}`, `{"tasks": [...]}` or a plain list."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"task file {path} does not exist; pass the path of your Task Master tasks.json") from None
    except OSError as exc:
        raise TaskFileError(f"cannot read task file {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TaskFileError(
            f"task file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    return tasks_from_document(data, source=str(path), tag=tag)


def tasks_from_document(data: Any, *, source: str = "task file", tag: str | None = None) -> list[dict[str, Any]]:
    """Find the task list in a parsed Task Master document."""
    tasks: Any
    if isinstance(data, list):
        tasks = data
    elif isinstance(data, dict) and isinstance(data.get("tasks"), list):
        tasks = data["tasks"]
    elif isinstance(data, dict):
        tagged = {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("tasks"), list)}
        chosen = tag or ("master" if "master" in tagged else (next(iter(tagged)) if len(tagged) == 1 else None))
        if chosen is None or chosen not in tagged:
            known = ", ".join(sorted(tagged)) or "none"
            raise TaskFileError(
                f"{source} has no task list{f' under tag {tag!r}' if tag else ''} "
                f'(tags found: {known}); expected {{"master": {{"tasks": [...]}}}} or a list'
            )
        tasks = tagged[chosen]["tasks"]
    else:
        raise TaskFileError(f'{source} must hold a JSON list of tasks or {{"master": {{"tasks": [...]}}}}')
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise TaskFileError(f"{source}: entry {index + 1} of the task list is not an object")
        if _as_int(task.get("id")) is None:
            raise TaskFileError(f"{source}: entry {index + 1} of the task list has no integer id")
    return [dict(task) for task in tasks]


def find_task(tasks: Sequence[Mapping[str, Any]], task_id: int, *, source: str = "task file") -> dict[str, Any]:
    """The task with that id; a TaskFileError listing the ids present otherwise."""
    for task in tasks:
        if _as_int(task.get("id")) == task_id:
            return dict(task)
    ids = ", ".join(str(_as_int(t.get("id"))) for t in tasks) or "none"
    raise TaskFileError(f"task {task_id} is not in {source} (ids present: {ids})")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(task: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = task.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def test_strategy(task: Mapping[str, Any]) -> str:
    """The test strategy under either spelling Task Master has used."""
    return _text(task, "test_strategy", "testStrategy")


def acceptance_criteria(task: Mapping[str, Any]) -> str:
    """The text after `ACCEPTANCE CRITERIA:` in the test strategy, or all of it."""
    strategy = test_strategy(task)
    match = ACCEPTANCE_MARKER.search(strategy)
    if match:
        after = strategy[match.end() :].strip()
        if after:
            return after
    return strategy


def _int_dependencies(values: Any) -> list[int]:
    """Integer ids only: `"3"` becomes 3; subtask references such as `"2.1"` are not tasks and are left out."""
    if not isinstance(values, list):
        return []
    found: list[int] = []
    for value in values:
        number = _as_int(value)
        if number is not None and number >= 1 and number not in found:
            found.append(number)
    return found


def dependencies(task: Mapping[str, Any]) -> list[int]:
    """The ids of the tasks this one depends on."""
    return _int_dependencies(task.get("dependencies"))


def render_task_markdown(task: Mapping[str, Any]) -> str:
    """task.md: what the agent reads first, in the order a person would write it."""
    task_id = _as_int(task.get("id"))
    title = _text(task, "title") or f"Task {task_id}"
    lines = [f"# Task {task_id}: {title}", ""]
    meta = []
    priority = _text(task, "priority")
    if priority:
        meta.append(f"- Priority: {priority}")
    deps = dependencies(task)
    if deps:
        meta.append("- Depends on: " + ", ".join(f"task {d}" for d in deps))
    if meta:
        lines += meta + [""]
    for heading, value in (
        ("Description", _text(task, "description")),
        ("Details", _text(task, "details")),
        ("Test strategy", test_strategy(task)),
    ):
        if value:
            lines += [f"## {heading}", "", value, ""]
    subtasks = [s for s in task.get("subtasks") or [] if isinstance(s, dict)]
    if subtasks:
        lines += ["## Subtasks", ""]
        for sub in subtasks:
            sub_id = _as_int(sub.get("id"))
            status = _text(sub, "status")
            lines.append(
                f"### {task_id}.{sub_id}: {_text(sub, 'title') or 'untitled'}" + (f" ({status})" if status else "")
            )
            lines.append("")
            for heading, value in (
                ("Description", _text(sub, "description")),
                ("Details", _text(sub, "details")),
                ("Test strategy", test_strategy(sub)),
            ):
                if value:
                    lines += [f"**{heading}:** {value}", ""]
            sub_deps = _int_dependencies(sub.get("dependencies"))
            if sub_deps:
                lines += ["**Depends on:** " + ", ".join(f"{task_id}.{d}" for d in sub_deps), ""]
    return "\n".join(lines).rstrip() + "\n"


def _status(item: Mapping[str, Any]) -> str:
    status = _text(item, "status").lower().replace("_", "-")
    return status if status in TASKMASTER_STATUSES else ""


def _clean_subtask(sub: Mapping[str, Any]) -> dict[str, Any]:
    sub_id = _as_int(sub.get("id")) or 0
    cleaned: dict[str, Any] = {"id": sub_id, "title": _text(sub, "title") or f"Subtask {sub_id}"}
    for name in ("description", "details"):
        value = _text(sub, name)
        if value:
            cleaned[name] = value
    if _status(sub):
        cleaned["status"] = _status(sub)
    strategy = test_strategy(sub)
    if strategy:
        cleaned["test_strategy"] = strategy
    cleaned["dependencies"] = [d for d in _int_dependencies(sub.get("dependencies")) if d != sub_id]
    return cleaned


def read_document(path: Path, what: str) -> str:
    """A markdown document given on the command line; empty or unreadable is a usage error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"cannot read {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise TaskFileError(f"{what} file {path} is empty; nothing to attach")
    return text


def build_submission(
    task: Mapping[str, Any],
    *,
    service: str,
    agent: str,
    design_spec: str | None = None,
    prompt: str | None = None,
    repository: Mapping[str, str] | None = None,
    extra_documents: Iterable[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The POST /api/v1/pm/tasks body for one Task Master task and its documents."""
    task_id = _as_int(task.get("id"))
    body: dict[str, Any] = {
        "id": task_id,
        "title": _text(task, "title") or f"Task {task_id}",
        "service_name": service,
        "agent_name": agent,
    }
    for name in ("description", "details"):
        value = _text(task, name)
        if value:
            body[name] = value
    strategy = test_strategy(task)
    if strategy:
        body["test_strategy"] = strategy
    priority = _text(task, "priority").lower()
    if priority in PRIORITIES:
        body["priority"] = priority
    if _status(task):
        body["status"] = _status(task)
    body["dependencies"] = [d for d in dependencies(task) if d != task_id]
    subtasks = [s for s in task.get("subtasks") or [] if isinstance(s, dict) and (_as_int(s.get("id")) or 0) >= 1]
    body["subtasks"] = [_clean_subtask(s) for s in subtasks]
    files = [{"filename": "task.md", "content": render_task_markdown(task), "file_type": "task"}]
    criteria = acceptance_criteria(task)
    if criteria:
        files.append(
            {
                "filename": "acceptance-criteria.md",
                "content": f"# Acceptance criteria: task {task_id}\n\n{criteria}\n",
                "file_type": "acceptance-criteria",
            }
        )
    if design_spec is not None:
        files.append({"filename": "design-spec.md", "content": design_spec, "file_type": "design-spec"})
    if prompt is not None:
        files.append({"filename": "prompt.md", "content": prompt, "file_type": "prompt"})
    files.extend(dict(doc) for doc in extra_documents)
    body["markdown_files"] = files
    if repository:
        body["repository"] = dict(repository)
    return body


def dependency_order(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tasks sorted so each comes after the tasks of the file it depends on; ties by id.

    Dependencies on ids not in the file are left to the server (it blocks the
    task until they exist and succeed). A cycle is a usage error naming it.
    """
    by_id: dict[int, dict[str, Any]] = {}
    for task in tasks:
        task_id = _as_int(task.get("id"))
        if task_id is None:
            raise TaskFileError("every task needs an integer id")
        if task_id in by_id:
            raise TaskFileError(f"task id {task_id} appears twice in the task file")
        by_id[task_id] = dict(task)
    waiting = {tid: {d for d in dependencies(t) if d in by_id and d != tid} for tid, t in by_id.items()}
    ordered: list[dict[str, Any]] = []
    done: set[int] = set()
    while waiting:
        ready = sorted(tid for tid, deps in waiting.items() if deps <= done)
        if not ready:
            cycle = _find_cycle(waiting)
            raise TaskFileError(
                "the task dependencies form a cycle ("
                + " -> ".join(map(str, cycle))
                + "); fix the dependencies in the task file"
            )
        for tid in ready:
            ordered.append(by_id[tid])
            done.add(tid)
            del waiting[tid]
    return ordered


def _find_cycle(graph: Mapping[int, set[int]]) -> list[int]:
    """One cycle among the remaining tasks, for the error message."""
    start = min(graph)
    path: list[int] = []
    node = start
    while node not in path:
        path.append(node)
        node = min(d for d in graph[node] if d in graph)
    return path[path.index(node) :] + [node]
