"""Budgets: a run's limits reach Claude Code only; a spent daily budget holds admission until it is not."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import operations
from orchestrator.coordination import admission
from orchestrator.runners.base import AgentSpec
from orchestrator.settings import ConfigError, Settings
from orchestrator.store import TaskStore
from orchestrator.usage.budget import next_day_at, today, with_limits
from tests.support.runs import Sent

SERVICE = "web"


def test_limits_are_added_to_claude_code_only(settings: Settings) -> None:
    claude = AgentSpec(name="claude", image="", command=("claude", "-p", "--verbose", "do it"))
    limited = with_limits(claude, settings.replace(default_max_turns=40), {"max_cost_usd": 0.75})
    assert limited.command == ("claude", "--max-budget-usd", "0.75", "--max-turns", "40", "-p", "--verbose", "do it")
    assert with_limits(claude, settings, {}) == claude
    other = AgentSpec(name="x", image="", command=("python", "-m", "agent"))
    assert with_limits(other, settings.replace(default_max_turns=40), {"max_turns": 3}) == other
    pathed = AgentSpec(name="claude", image="", command=("/usr/local/bin/claude", "-p"))
    assert with_limits(pathed, settings, {"max_turns": 3}).command == (
        "/usr/local/bin/claude", "--max-turns", "3", "-p")


def test_budget_settings_parse(base_env: dict[str, str]) -> None:
    parsed = Settings.from_env({**base_env, "ORCHESTRATOR_DAILY_BUDGET_USD": "25",
                                "ORCHESTRATOR_SERVICE_DAILY_BUDGETS": "web=5, billing=2.5",
                                "ORCHESTRATOR_DEFAULT_MAX_COST_USD": "1.25", "ORCHESTRATOR_DEFAULT_MAX_TURNS": "50"})
    assert parsed.daily_budget_usd == 25 and parsed.service_daily_budgets == {"web": 5.0, "billing": 2.5}
    assert (parsed.default_max_cost_usd, parsed.default_max_turns) == (1.25, 50)
    empty = Settings.from_env(base_env)
    assert empty.daily_budget_usd is None and empty.service_daily_budgets == {} and empty.default_max_turns is None
    for name, value in (("ORCHESTRATOR_SERVICE_DAILY_BUDGETS", "web=lots"), ("ORCHESTRATOR_DAILY_BUDGET_USD", "-1"),
                        ("ORCHESTRATOR_DEFAULT_MAX_TURNS", "0")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**base_env, name: value})


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    return Sent().install()


def spend(store: TaskStore, amount: float, service: str = SERVICE, n: int = 1) -> None:
    run_id = store.create_run(service, 900 + n, version=1, attempt=1).run_id
    store.record_usage(run_id, service, "claude", {"cost_usd": amount, "num_turns": 1}, day=today())


def submit(store: TaskStore, task_id: int, service: str = SERVICE) -> dict[str, Any]:
    spec = {"id": task_id, "title": f"task {task_id}", "service_name": service, "agent_name": "claude",
            "priority": "medium", "dependencies": []}
    return operations.submit_task(store, spec, actor="pm")


def test_a_spent_service_budget_blocks_until_it_is_raised(store: TaskStore, settings: Settings, sent: Sent) -> None:
    limited = settings.replace(service_daily_budgets={SERVICE: 1.0})
    spend(store, 0.6)
    spend(store, 0.5, n=2)
    submit(store, 1)
    assert admission.admit(store, limited, SERVICE, 1) == "Blocked"
    task = store.require_task(SERVICE, 1)
    assert task.status_reason == f"daily budget of {SERVICE} spent (1.10 of 1.00 USD); resumes at {next_day_at()}"
    submit(store, 2, service="other")  # another service's budget is its own
    assert admission.admit(store, limited, "other", 2) == "Preparing"
    # Re-evaluated later (as the reconcile's re-drive does) with a higher budget, it goes on by itself.
    assert admission.reevaluate(store, limited, SERVICE, 1) == "Blocked"
    assert admission.reevaluate(store, settings.replace(service_daily_budgets={SERVICE: 2.0}), SERVICE, 1) == "Queued"


def test_the_budget_of_all_services_stops_every_start(store: TaskStore, settings: Settings, sent: Sent) -> None:
    spend(store, 3.0, service="billing")
    submit(store, 1)
    assert admission.admit(store, settings.replace(daily_budget_usd=5.0), SERVICE, 1) == "Preparing"
    spend(store, 2.0, service="billing", n=2)
    submit(store, 2)
    assert admission.admit(store, settings.replace(daily_budget_usd=5.0), SERVICE, 2) == "Blocked"
    assert store.require_task(SERVICE, 2).status_reason.startswith(
        "daily budget of all services spent (5.00 of 5.00 USD)")


def test_a_queued_task_is_held_when_the_budget_is_spent_while_it_waits(store: TaskStore, settings: Settings,
                                                                       sent: Sent) -> None:
    one_at_a_time = settings.replace(max_runs_per_service=1, service_daily_budgets={SERVICE: 1.0})
    submit(store, 1)
    submit(store, 2)
    assert admission.admit(store, one_at_a_time, SERVICE, 1) == "Preparing"
    assert admission.admit(store, one_at_a_time, SERVICE, 2) == "Queued"  # waits for the service's slot
    spend(store, 1.0)
    store.release_slot(store.require_task(SERVICE, 1).current_run)
    admission.admit_waiting(store, one_at_a_time)
    task = store.require_task(SERVICE, 2)
    assert task.status == "Blocked" and task.status_reason.startswith(f"daily budget of {SERVICE} spent")
