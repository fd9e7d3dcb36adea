"""Budgets: a run's own limits (passed to Claude Code) and the daily spend that stops admission."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.runners.base import AgentSpec
from orchestrator.settings import Settings


def is_claude_code(command: tuple[str, ...] | list[str]) -> bool:
    """True when the command runs Claude Code (`claude`, by name or path)."""
    return bool(command) and os.path.basename(str(command[0])) == "claude"


def run_limits(settings: Settings, spec: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """(max cost in USD, max turns) of one run: the task's own, else the configured defaults."""
    cost = spec.get("max_cost_usd")
    turns = spec.get("max_turns")
    return (float(cost) if cost else settings.default_max_cost_usd, int(turns) if turns else settings.default_max_turns)


def with_limits(agent: AgentSpec, settings: Settings, spec: Mapping[str, Any]) -> AgentSpec:
    """The agent with `--max-budget-usd` / `--max-turns` added when it is Claude Code and limits are set."""
    if not is_claude_code(agent.command):
        return agent
    cost, turns = run_limits(settings, spec)
    flags: list[str] = []
    if cost is not None and "--max-budget-usd" not in agent.command:
        flags += ["--max-budget-usd", f"{cost:g}"]
    if turns is not None and "--max-turns" not in agent.command:
        flags += ["--max-turns", str(turns)]
    if not flags:
        return agent
    # Right after the program: the prompt stays the last word.
    return dataclasses.replace(agent, command=(agent.command[0], *flags, *agent.command[1:]))


def today(now: float | None = None) -> str:
    """The UTC day (YYYY-MM-DD) usage is counted under."""
    moment = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%d")


def next_day_at(now: float | None = None) -> str:
    """When the next UTC day starts, as people read it."""
    moment = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    tomorrow = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return tomorrow.strftime("%Y-%m-%d %H:%M UTC")


def budgets_configured(settings: Settings, service: str) -> bool:
    return settings.daily_budget_usd is not None or service in settings.service_daily_budgets


def blocked_reason(store: Any, settings: Settings, service: str, now: float | None = None) -> str | None:
    """Why `service` may start nothing more today (a daily budget is spent), or None.

    Reads the store only when a budget is configured.
    """
    found = spent_budget(store, settings, service, now)
    return found[0] if found else None


def spent_budget(store: Any, settings: Settings, service: str, now: float | None = None) -> tuple[str, bool] | None:
    """(reason, whether it is the budget of all services) when a daily budget is spent; else None."""
    if not budgets_configured(settings, service):
        return None
    day = today(now)
    limit = settings.service_daily_budgets.get(service)
    if limit is not None:
        spent = store.spent_usd(day, service)
        if spent >= limit:
            return (
                f"daily budget of {service} spent ({spent:.2f} of {limit:.2f} USD); resumes at {next_day_at(now)}",
                False,
            )
    if settings.daily_budget_usd is not None:
        spent = store.spent_usd(day)
        if spent >= settings.daily_budget_usd:
            return (
                f"daily budget of all services spent ({spent:.2f} of {settings.daily_budget_usd:.2f} USD); "
                f"resumes at {next_day_at(now)}",
                True,
            )
    return None
