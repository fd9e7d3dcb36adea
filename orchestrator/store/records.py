"""How task and run fields are stored in Redis hashes, and read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Transition:
    """What a successful status change did."""

    service: str
    task_id: int
    source: str
    target: str
    seq: int


def encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def encode_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """Task and run fields as stored: None as '' (reads as unset), numbers as repr, the rest as `encode`."""
    return {k: ("" if v is None else encode(v) if not isinstance(v, (int, float)) else repr(v))
            for k, v in fields.items()}


def flatten(fields: Mapping[str, str]) -> list[str]:
    """name, value, name, value... as HSET and the scripts take them."""
    return [item for pair in fields.items() for item in pair]


def pairs(raw: list[str]) -> dict[str, str]:
    """A hash as HGETALL returns it from a script (a flat list) as a dict."""
    return dict(zip(raw[::2], raw[1::2]))


def decode_task(raw: Mapping[str, str]) -> dict[str, Any]:
    task: dict[str, Any] = dict(raw)
    for key in ("spec", "outputs", "origin"):
        if key in task:
            task[key] = json.loads(task[key])
    for key in ("id", "seq", "context_version", "history_seq"):
        if key in task:
            task[key] = int(task[key])
    for key in ("created_at", "updated_at"):
        if key in task:
            task[key] = float(task[key])
    return task


def decode_run(raw: Mapping[str, str]) -> dict[str, Any]:
    run: dict[str, Any] = dict(raw)
    for key in ("outputs", "inputs", "usage"):
        if run.get(key):
            run[key] = json.loads(run[key])
    for key in ("task_id", "version", "attempt", "seq"):
        if key in run:
            run[key] = int(run[key])
    if run.get("exit_code") not in (None, ""):
        run["exit_code"] = int(run["exit_code"])
    for key in ("queued_at", "started_at", "finished_at"):
        if run.get(key) not in (None, ""):
            run[key] = float(run[key])
    return run
