"""Usage as the API shows it: one run's record, a task's totals, a service's days."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.model import Run
from orchestrator.usage.stream import TOKEN_KINDS

# The fields every shown usage has (scripts and the console read these names).
RUN_FIELDS = (*TOKEN_KINDS, "cost_usd", "num_turns", "session_id", "model")
SUMMED = (*TOKEN_KINDS, "cost_usd", "num_turns")


def run_usage(run: Run) -> dict[str, Any] | None:
    """The run's usage with every named field present; None when the agent reported none."""
    usage = run.usage
    if not usage:
        return None
    shown = {key: usage.get(key) for key in RUN_FIELDS}
    shown.update({k: v for k, v in usage.items() if k not in shown})
    return shown


def usage_totals(usages: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Sums over runs: tokens by kind, cost (None until some run has one), turns, and runs counted."""
    total: dict[str, Any] = dict.fromkeys(SUMMED, 0)
    total["cost_usd"] = None
    total["runs"] = 0
    for usage in usages:
        if not usage:
            continue
        total["runs"] += 1
        for key in SUMMED:
            value = usage.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = (total[key] or 0) + value
    if isinstance(total["cost_usd"], float):
        total["cost_usd"] = round(total["cost_usd"], 6)
    return total
