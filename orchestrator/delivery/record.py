"""The delivery fields of a run record and how the API shows them.

A run's fields are stored as strings; `run_view_fields` reads them back into
the types the API promises, whether or not the store decoded them already.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

CHANGES = "changes"
NO_CHANGES = "no_changes"
FAILED = "failed"
CANCELLED = "cancelled"
OUTCOMES = (CHANGES, NO_CHANGES, FAILED, CANCELLED)

# Run fields delivery writes (besides `outputs`), in the order the API lists them.
RUN_FIELDS = ("branch", "base", "commit", "commits", "diffstat", "pull_request_url", "pull_request_number", "outcome")


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _diffstat(value: Any) -> dict[str, int] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else None
        except ValueError:
            return None
    if not isinstance(value, Mapping):
        return None
    return {key: int(value.get(key) or 0) for key in ("files", "insertions", "deletions")}


def run_view_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    """branch, base, commit, commits, diffstat, pull_request_url, pull_request_number and outcome of a run."""
    raw = run.get("outputs")
    outputs: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return {
        "branch": run.get("branch") or None,
        "base": run.get("base") or None,
        "commit": run.get("commit") or None,
        "commits": _int(run.get("commits")),
        "diffstat": _diffstat(run.get("diffstat")),
        "pull_request_url": run.get("pull_request_url") or outputs.get("pull_request_url") or None,
        "pull_request_number": _int(run.get("pull_request_number")),
        "outcome": run.get("outcome") if run.get("outcome") in OUTCOMES else None,
    }
