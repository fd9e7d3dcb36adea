"""The command line in-process, the way a shell runs it: click's test runner around `orchestrator`."""

from __future__ import annotations

from collections.abc import Mapping

from click.testing import CliRunner, Result

from orchestrator.cli import cli


def invoke(*argv: str, env: Mapping[str, str | None] | None = None) -> Result:
    """Run `orchestrator ARGV`; an exception the command did not turn into an exit code fails the test."""
    result = CliRunner().invoke(cli, list(argv), env=dict(env or {}), prog_name="orchestrator")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result
