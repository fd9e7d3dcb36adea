"""The root command: documented exit codes for every failure, one-line errors, command aliases."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from orchestrator.cli.context import Context, print_error
from orchestrator.cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError
from orchestrator.cli.output import make_console
from orchestrator.settings import ConfigError
from orchestrator.taskmaster import TaskFileError


class _NamesItself:
    """Parse errors carry the command's context, so the error line can point at its --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except click.UsageError as exc:
            # click raises some of them (an option without its value) with no context at all.
            if exc.ctx is None:
                exc.ctx, exc.cmd = ctx, ctx.command
            raise


class Command(_NamesItself, click.Command):
    """Every leaf command of `orchestrator`."""


class AliasGroup(_NamesItself, click.Group):
    """A group where old command names still work, without being listed twice in --help."""

    command_class = Command
    group_class = type  # sub-groups are of the same class

    aliases: Mapping[str, str] = {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # The canonical name, so usage lines and errors say `orchestrator watcher`.
        _name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


class RootGroup(AliasGroup):
    """`orchestrator`: runs a command and turns whatever it raised into its exit code.

    `main()` returns the code instead of exiting when `standalone_mode` is off,
    because tests and `orchestrator.cli.main` call it in-process.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        code = self._run(args, prog_name or "orchestrator", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: Sequence[str] | None, prog_name: str, complete_var: str | None, **extra: Any) -> int:
        err = make_console(sys.stderr)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            # Bare `orchestrator` or `orchestrator task`: the help, and the usage exit code.
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
            return EXIT_USAGE
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else prog_name
            print_error(err, f"{_one_line(exc.format_message()).rstrip('.')}; see `{where} --help`")
            return exc.exit_code
        except click.ClickException as exc:
            print_error(err, _one_line(exc.format_message()))
            return exc.exit_code
        except click.Abort:  # Ctrl-C; click has already ended the line
            return EXIT_INTERRUPTED
        return int(result or 0)

    def invoke(self, ctx: click.Context) -> Any:
        # Inside the invocation, so the error line knows --no-color.
        app = ctx.ensure_object(Context)
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            app.fail(f"configuration error: {exc}")
            return EXIT_USAGE
        except CliError as exc:
            app.fail(exc.message, exc.details)
            return exc.exit_code
        except TaskFileError as exc:  # a Task Master file the user named: a usage error
            app.fail(str(exc))
            return EXIT_USAGE
        except BrokenPipeError:  # `orchestrator task list | head`: the reader had enough
            _silence_stdout()
            return EXIT_OK


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail too.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
