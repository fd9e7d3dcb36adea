"""How task and run fields are stored in Redis hashes, and read back."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.model import Outcome, Priority, Run, RunPhase, Status, Task, TaskSummary


@dataclass(frozen=True)
class Transition:
    """What a successful status change did."""

    service: str
    task_id: int
    source: str
    target: str
    seq: int


def encode(value: Any) -> str:
    if isinstance(value, enum.Enum):  # Status, RunPhase, Priority...: their stored word
        return str(value.value)
    if isinstance(value, str):
        return value
    # UTF-8 as it is: escaping made every non-ASCII character cost up to 12 bytes of Redis memory.
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which UTF-8 cannot hold: escaped instead
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text


def encode_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """Task and run fields as stored: None as '' (reads as unset), numbers as repr, the rest as `encode`."""
    return {
        k: ("" if v is None else encode(v) if not isinstance(v, (int, float)) else repr(v)) for k, v in fields.items()
    }


def flatten(fields: Mapping[str, str]) -> list[str]:
    """name, value, name, value... as HSET and the scripts take them."""
    return [item for pair in fields.items() for item in pair]


def pairs(raw: list[str]) -> dict[str, str]:
    """A hash as HGETALL returns it from a script (a flat list) as a dict."""
    return dict(zip(raw[::2], raw[1::2]))


# How each typed field is read back from its stored string. A field missing from
# the record (written before it existed) or stored as '' keeps the default.


def _json_object(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _flag(raw: str) -> bool:
    return raw in _TRUE


_TRUE = frozenset({"1", "true", "True", "yes"})


def _lenient_int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _diffstat(raw: str) -> dict[str, int] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {key: int(value.get(key) or 0) for key in ("files", "insertions", "deletions")}


def _outcome(raw: str) -> Outcome | None:
    try:
        return Outcome(raw)
    except ValueError:
        return None


_TASK_FIELDS: dict[str, Callable[[str], Any]] = {
    "service": str,
    "id": int,
    "agent": str,
    "priority": Priority.parse,
    "spec": _json_object,
    "origin": _json_object,
    "outputs": _json_object,
    "status": Status,
    "status_reason": str,
    "context_version": int,
    "created_at": float,
    "updated_at": float,
    "submitted_by": str,
    "seq": int,
    "history_seq": int,
    "current_run": str,
    "next_run": str,
    "next_version": int,
    "next_attempt": int,
    "stage": str,
    "retries": int,
    "not_before": float,
    "redriven_at": float,
    "pull_request_url": str,
    "pull_request_outcome": str,
    "github_status_comment": str,
    "github_status_digest": str,
    "trace_parent": str,
}

# What a list shows of a task (TaskSummary): read with one HMGET, the spec never.
_SUMMARY_FIELDS: dict[str, Callable[[str], Any]] = {
    "service": str,
    "id": int,
    "agent": str,
    "priority": Priority.parse,
    "title": str,
    "submitted_status": str,
    "status": Status,
    "status_reason": str,
    "context_version": int,
    "current_run": str,
    "created_at": float,
    "updated_at": float,
    "seq": int,
}
SUMMARY_FIELDS: tuple[str, ...] = tuple(_SUMMARY_FIELDS)


def summary_fields(spec: Mapping[str, Any]) -> dict[str, str]:
    """The summary's copies of spec fields, stored beside the record when it is written."""
    title, status = spec.get("title", ""), spec.get("status", "pending")
    title = title if isinstance(title, str) else str(title)
    status = status if isinstance(status, str) and status else "pending"
    # Plain strings in the hash: a lone surrogate (which UTF-8 cannot hold) shows as '?' in a list.
    return {
        "title": title.encode("utf-8", "replace").decode("utf-8"),
        "submitted_status": status.encode("utf-8", "replace").decode("utf-8"),
    }


_RUN_FIELDS: dict[str, Callable[[str], Any]] = {
    "run_id": str,
    "service": str,
    "task_id": int,
    "version": int,
    "attempt": int,
    "stage": str,
    "runner": str,
    "job_name": str,
    "phase": RunPhase,
    "queued_at": float,
    "launched_at": float,
    "started_at": float,
    "finished_at": float,
    "exit_code": int,
    "failure_reason": str,
    "retryable": _flag,
    "observed_reason": str,
    "finish_sent": str,
    "outcome": _outcome,
    "outputs": _json_object,
    "agent": str,
    "image": str,
    "prompt": str,
    "inputs": _json_object,
    "output_dir": str,
    "branch": str,
    "commit": str,
    "working_directory": str,
    "workspace_fence": int,
    "base": str,
    "commits": _lenient_int,
    "diffstat": _diffstat,
    "pull_request_url": str,
    "pull_request_number": _lenient_int,
    "delivered_at": float,
    "delivery_failures": int,
    "launch_failures": int,
    "vanished": _flag,
    "stopped_at": float,
    "delivery_error": str,
    "usage": _json_object,
    "rate_limited_until": float,
}


def _decoded(raw: Mapping[str, str], readers: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """The known, non-empty fields of a record, each as its type; unknown fields are left out."""
    return {name: read(raw[name]) for name, read in readers.items() if raw.get(name) not in (None, "")}


def decode_task(raw: Mapping[str, str]) -> Task:
    """A task hash as a Task. An old record without `priority` takes its spec's."""
    task = Task(**_decoded(raw, _TASK_FIELDS))
    if not raw.get("priority") and isinstance(task.spec.get("priority"), str):
        task.priority = Priority.parse(task.spec["priority"])
    return task


def decode_run(raw: Mapping[str, str]) -> Run:
    """A run hash (or some of its fields) as a Run."""
    return Run(**_decoded(raw, _RUN_FIELDS))


def decode_summary(raw: Mapping[str, str]) -> TaskSummary:
    """The summary fields of a task hash (as HMGET of SUMMARY_FIELDS read them) as a TaskSummary."""
    return TaskSummary(**_decoded(raw, _SUMMARY_FIELDS))
