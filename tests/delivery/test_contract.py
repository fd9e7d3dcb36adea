"""The agent contract as preparation writes it into CLAUDE.md."""

from __future__ import annotations

from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.delivery.conftest import prepare_and_run, task_spec


def test_claude_md_tells_the_agent_to_commit_never_push_and_where_its_outputs_go(
        store: TaskStore, dl_settings: Settings, remote, git_server, sent: list) -> None:
    run_id = prepare_and_run(store, dl_settings, task_spec(7, dependencies=[], working_directory="services/api"))
    text = (dl_settings.workspace_root / "shop" / "worktrees" / "7" / "CLAUDE.md").read_text()
    assert "commit your work on it" in text and "do not push" in text
    assert "the orchestrator commits anything you left uncommitted, pushes the branch and opens" in text
    # The output directory, relative to where the agent starts (services/api inside the checkout).
    assert f"`../../.task/7/runs/{run_id}`" in text and "ORCHESTRATOR_OUTPUT_DIR" in text
    for key in ("`outputs.json`", "`summary`", "`handoff.md`", "ORCHESTRATOR_HANDOFF_FILE"):
        assert key in text
