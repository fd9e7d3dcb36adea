"""The delivery fields of a run record and how the API shows them.

The store decodes a run's fields into the model (`Run`); `run_view_fields`
shows them the way the API promises.
"""

from __future__ import annotations

from typing import Any

from orchestrator.model import Outcome, Run

CHANGES = Outcome.CHANGES
NO_CHANGES = Outcome.NO_CHANGES
FAILED = Outcome.FAILED
CANCELLED = Outcome.CANCELLED
OUTCOMES = tuple(Outcome)

# Run fields delivery writes (besides `outputs`), in the order the API lists them.
RUN_FIELDS = ("branch", "base", "commit", "commits", "diffstat", "pull_request_url", "pull_request_number", "outcome")


def run_view_fields(run: Run) -> dict[str, Any]:
    """branch, base, commit, commits, diffstat, pull_request_url, pull_request_number and outcome of a run."""
    return {
        "branch": run.branch or None,
        "base": run.base or None,
        "commit": run.commit or None,
        "commits": run.commits,
        "diffstat": run.diffstat,
        "pull_request_url": run.pull_request_url or run.outputs.get("pull_request_url") or None,
        "pull_request_number": run.pull_request_number,
        "outcome": run.outcome.value if run.outcome else None,
    }
