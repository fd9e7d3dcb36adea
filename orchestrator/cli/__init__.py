"""The `orchestrator` command: the local stack (`up`) and the PM's commands.

Each sub-command lives in a module with a `register(subparsers)` function that
adds its parser and sets `func(ctx, args) -> exit code`. Adding a command is one
line in `COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from orchestrator.cli.context import Context, common_options
from orchestrator.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError
from orchestrator.settings import ConfigError

# Modules whose `register(subparsers)` adds sub-commands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "orchestrator.cli.stack",
    "orchestrator.cli.pm",
    "orchestrator.cli.watch",
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and the documented exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"orchestrator: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = _Parser(prog="orchestrator", description="Run AI coding agents at scale: the local stack and "
                     "the PM's commands.", parents=[common_options()])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrator` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        return int(args.func(ctx, args) or 0)
    except ConfigError as exc:
        ctx.fail(f"configuration error: {exc}")
        return EXIT_USAGE
    except CliError as exc:
        ctx.fail(exc.message, exc.details)
        return exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `orchestrator task list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
