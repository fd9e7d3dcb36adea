"""The command tree itself: version, help with examples, aliases, completion, exit codes of click's errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import click
import pytest

from orchestrator import __version__
from orchestrator.cli import cli, main
from orchestrator.cli.errors import EXIT_OK, EXIT_USAGE
from tests.cli.invoke import invoke


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            yield from walk(command.commands[name], (*path, name))


COMMANDS = list(walk(cli))


def test_the_tree_has_every_documented_command() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert paths == {"", "up", "health", "watcher", "task", "task submit", "task list", "task status", "task watch",
                     "task logs", "task context", "task cancel", "task retry", "worker-alive"}


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == EXIT_OK and result.stdout == f"orchestrator {__version__}\n"
    assert main(["--version"]) == EXIT_OK


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "orchestrator" for p, _ in COMMANDS])
def test_every_help_has_a_one_line_summary_and_an_example(path: tuple[str, ...], command: click.Command) -> None:
    assert command.help and "\n" not in command.help.strip()  # the one-line docstring
    result = invoke(*path, "--help")
    assert result.exit_code == EXIT_OK
    examples = result.stdout.split("Examples:\n", 1)[1].splitlines()
    # Each example is a whole command line of this command, kept as written.
    assert examples and all(line.startswith("    ") for line in examples if line)
    assert any(" ".join(("orchestrator", *path)) in line for line in examples), examples


def test_watcher_and_its_old_name_are_the_same_command() -> None:
    ctx = click.Context(cli)
    assert cli.get_command(ctx, "watch") is cli.get_command(ctx, "watcher") is not None
    assert "watch" not in cli.list_commands(ctx)  # one entry in --help
    for name in ("watcher", "watch"):
        result = invoke(name, "--help")
        assert result.exit_code == EXIT_OK
        assert result.stdout.startswith("Usage: orchestrator watcher [OPTIONS]")
    assert "Also available as `orchestrator watch`" in invoke("watcher", "--help").stdout
    # The PM's live view keeps its name.
    assert invoke("task", "watch", "--help").stdout.startswith("Usage: orchestrator task watch [OPTIONS] SERVICE/ID")


def test_usage_errors_exit_2_with_one_readable_line() -> None:
    result = invoke("task", "list", "--limit")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == "orchestrator: Option '--limit' requires an argument; see `orchestrator task list --help`\n"
    result = invoke("frobnicate")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == "orchestrator: No such command 'frobnicate'; see `orchestrator --help`\n"
    # Bare groups show their help, on stderr, with the usage code.
    result = invoke("task")
    assert result.exit_code == EXIT_USAGE and "Usage: orchestrator task" in result.stderr


def test_main_returns_the_code_instead_of_exiting() -> None:
    assert main(["task", "status", "not-a-ref"]) == EXIT_USAGE
    assert main(["--help"]) == EXIT_OK


def test_shell_completion_is_clicks() -> None:
    result = invoke(env={"_ORCHESTRATOR_COMPLETE": "bash_source"})
    assert result.exit_code == EXIT_OK and "_orchestrator_completion" in result.stdout
    completed = invoke(env={"_ORCHESTRATOR_COMPLETE": "bash_complete",
                            "COMP_WORDS": "orchestrator task list --status r", "COMP_CWORD": "4"})
    assert completed.stdout.split() == ["plain,Running"]  # completed as the API spells it


def test_python_dash_m_and_the_version() -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--version"], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"orchestrator {__version__}\n"
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "task", "list", "--status", "nope"], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_USAGE and done.stderr.count("\n") == 1 and done.stdout == ""
