"""Comment commands: only a line that starts with the prefix, outside quotes and code."""

from __future__ import annotations

import pytest

from orchestrator.github.commands import Command, parse_command


@pytest.mark.parametrize(("body", "expected"), [
    ("/orchestrator run", Command("run")),
    ("  /orchestrator   CANCEL  ", Command("cancel")),
    ("Thanks!\n/orchestrator retry now please\n/orchestrator cancel", Command("retry", "now please")),
    ("/orchestrator status", Command("status")),
    ("/orchestrator\trun", Command("run")),
])
def test_commands_are_found(body: str, expected: Command) -> None:
    assert parse_command(body, "/orchestrator") == expected


@pytest.mark.parametrize("body", [
    None, "", "please /orchestrator run", "/orchestratorrun", "/orchestrator", "/orchestrator dance",
    "> /orchestrator run", "```\n/orchestrator run\n```", "~~~\n/orchestrator run\n~~~",
    "/bot run",
])
def test_non_commands_are_none(body: str | None) -> None:
    assert parse_command(body, "/orchestrator") is None


def test_a_command_after_a_closed_code_block_counts() -> None:
    assert parse_command("```\nx\n```\n/orchestrator run", "/orchestrator") == Command("run")


def test_the_prefix_is_configurable() -> None:
    assert parse_command("/bot run", "/bot") == Command("run")
    assert parse_command("/orchestrator run", "/bot") is None
