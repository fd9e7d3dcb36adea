"""Claude Code runs end to end through the local runner: a stand-in `claude` prints recorded stream-json;
the watcher sees the process end; finish stores the usage, counts it once and judges the outcome honestly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import runs
from orchestrator.coordination import outcome
from orchestrator.runners import get_runner
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from orchestrator.usage.budget import today
from orchestrator.watcher import Watcher
from orchestrator.workspace.layout import checkout_dir
from tests.support.runs import Sent, launching_task
from tests.support.wait import wait_for

CLAUDE = Path(__file__).resolve().parents[1] / "support" / "claude" / "claude"
COMMAND = (str(CLAUDE), "-p", "--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose",
           "Read CLAUDE.md in this directory and complete the task it describes.")


@pytest.fixture
def claude_settings(settings: Settings) -> Settings:
    return settings.replace(local_agent_command=COMMAND, default_max_turns=30)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    sent = Sent().install()
    monkeypatch.setattr(outcome, "notify", lambda *a: None)
    yield sent


def run_scenario(store: TaskStore, settings: Settings, sent: Sent, scenario: str, task_id: int = 1,
                 **spec: Any) -> tuple[str, dict[str, Any]]:
    """Launch the stand-in for one task, wait for its end, finish it; (finish's answer, the run)."""
    run_id = launching_task(store, "billing", task_id, env={"APP_FAKE_SCENARIO": scenario}, **spec)
    workspace = checkout_dir(settings.workspace_root, "billing", task_id)
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "CLAUDE.md").write_text("# Add an invoice endpoint\n")
    runner = get_runner(settings)
    assert runs.launch(store, settings, runner, run_id, send=sent) == run_id
    watcher = Watcher(store, settings, runner, send=sent)
    wait_for(lambda: watcher.reconcile() and (run_id,) in sent.of(Step.FINISH_RUN))
    done = outcome.finish(store, settings, run_id)
    return done, store.get_run(run_id)


def argv(settings: Settings, run: dict[str, Any]) -> list[str]:
    return json.loads((checkout_dir(settings.workspace_root, "billing", run.task_id) / run.output_dir
                       / "claude-argv.json").read_text()) \
        if run.output_dir else json.loads(next(
            (settings.workspace_root / "billing").rglob("claude-argv.json")).read_text())


def test_a_successful_run_stores_its_usage_counts_it_once_and_gets_its_limits(
        store: TaskStore, claude_settings: Settings, sent: Sent) -> None:
    done, run = run_scenario(store, claude_settings, sent, "success", max_cost_usd=2.5)
    assert done == "Succeeded"
    usage = run.usage
    assert usage["cost_usd"] == pytest.approx(0.1234567) and usage["num_turns"] == 4
    assert usage["input_tokens"] == 1204 and usage["model"] == "claude-sonnet-4-5-20250929"
    assert set(usage["models"]) == {"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"}
    args = argv(claude_settings, run)
    assert args[:4] == ["--max-budget-usd", "2.5", "--max-turns", "30"]  # the task's own cost, the default turns
    assert args[-1].startswith("Read CLAUDE.md")
    day = today()
    counted = store.service_usage("billing", [day])[day]["claude"]
    assert counted["runs"] == 1 and counted["cost_usd"] == pytest.approx(0.1234567)
    # A redelivered finish changes nothing, and adds nothing.
    assert outcome.finish(store, claude_settings, run.run_id) == "not-current"
    from orchestrator.usage.record import account_run
    account_run(store, claude_settings, run)
    assert store.service_usage("billing", [day])[day]["claude"]["runs"] == 1
    assert store.spent_usd(day, "billing") == pytest.approx(0.1234567)
    assert store.spent_usd(day) == pytest.approx(0.1234567)


@pytest.mark.parametrize(("scenario", "reason"), [
    ("is_error", "agent reported an error: API Error: 500"),
    ("max_turns", "max_turns: stopped after 5 turns"),
    ("max_budget", "budget: the run's cost limit was reached"),
    ("denied", "permission denied: Bash(rm -rf /workspace/billing/.git)"),
])
def test_a_run_whose_stream_reports_an_error_fails_with_that_reason_and_is_not_retried(
        store: TaskStore, claude_settings: Settings, sent: Sent, scenario: str, reason: str) -> None:
    done, run = run_scenario(store, claude_settings, sent, scenario)
    assert done == "Failed"
    assert run.phase == "Failed" and run.failure_reason.startswith(reason) and run.retryable is False
    task = store.require_task("billing", 1)
    assert reason in task.status_reason and "retry" not in task.status_reason
    assert run.usage["cost_usd"] is not None


def test_a_model_rate_limit_waits_for_its_reset_instead_of_failing(
        store: TaskStore, claude_settings: Settings, sent: Sent) -> None:
    done, run = run_scenario(store, claude_settings, sent, "rate_limited")
    assert done == "Queued"
    task = store.require_task("billing", 1)
    assert task.status_reason == "model rate limit; resumes at 2030-01-01 00:00 UTC"
    assert task.not_before == 1893456000 and task.retries == 0


def test_a_crash_mid_stream_keeps_the_exit_code_and_the_partial_usage(
        store: TaskStore, claude_settings: Settings, sent: Sent) -> None:
    done, run = run_scenario(store, claude_settings, sent, "crash")
    assert done == "Failed" and run.failure_reason == "Error: exit code 1"
    assert run.usage["complete"] is False and run.usage["output_tokens"] == 208


def test_an_agent_without_stream_json_still_works_with_unknown_usage(
        store: TaskStore, settings: Settings, sent: Sent) -> None:
    done, run = run_scenario(store, settings.replace(local_agent_command=("/bin/sh", "-c", "echo plain; exit 0")),
                             sent, "success")
    assert done == "Succeeded" and not run.usage


def test_a_log_that_cannot_be_read_to_its_end_fails_nothing(store: TaskStore, settings: Settings) -> None:
    from orchestrator.usage.record import account_run

    class Broken:
        def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None):
            yield (Path(__file__).resolve().parents[1] / "fixtures" / "claude_stream" / "success.jsonl"
                   ).read_text().splitlines()[0]
            raise OSError("the pod went away")

    run_id = launching_task(store)
    verdict = account_run(store, settings, store.get_run(run_id), runner=Broken())
    assert not verdict.failed
    assert store.get_run(run_id).usage["complete"] is False


def test_a_run_whose_stream_reports_an_error_is_never_delivered(
        store: TaskStore, claude_settings: Settings, sent: Sent) -> None:
    repository = {"url": "https://github.com/acme/billing.git", "branch": "main"}
    done, run = run_scenario(store, claude_settings, sent, "denied", repository=repository)
    assert done == "Failed" and not sent.of(Step.DELIVER_RUN)
    done, run = run_scenario(store, claude_settings, sent, "success", task_id=2, repository=repository)
    assert done == "delivering" and sent.of(Step.DELIVER_RUN) == [(run.run_id,)]
    # The finish after delivery reads nothing again and counts nothing again.
    store.update_run(run.run_id, outcome="changes")
    from orchestrator.usage.record import account_run
    assert not account_run(store, claude_settings, store.get_run(run.run_id), runner=object()).failed
