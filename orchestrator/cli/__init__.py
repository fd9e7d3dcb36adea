"""The `orchestrator` command: the local stack (`up`), the PM's commands and the watcher daemon.

Built on click: each module holding commands exports them in `COMMANDS`; adding a
module is one line in `COMMAND_MODULES`. Shell completion is click's own:
`eval "$(_ORCHESTRATOR_COMPLETE=bash_source orchestrator)"`.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from orchestrator import __version__
from orchestrator.cli import pm, probe, stack, watcher
from orchestrator.cli.command import RootGroup
from orchestrator.cli.options import common_options, examples

# Modules whose `COMMANDS` are sub-commands of `orchestrator`, in help order.
COMMAND_MODULES = (stack, pm, watcher, probe)


class OrchestratorGroup(RootGroup):
    aliases = watcher.ALIASES


@click.group(
    "orchestrator",
    cls=OrchestratorGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=examples(
        "orchestrator up",
        "orchestrator task submit --task-json examples/tasks.json --task-id 1 --service demo --agent claude",
        "orchestrator task watch demo/1",
        'eval "$(_ORCHESTRATOR_COMPLETE=bash_source orchestrator)"   # tab completion',
    ),
)
@click.version_option(__version__, "--version", prog_name="orchestrator", message="%(prog)s %(version)s")
@common_options
def cli() -> None:
    """Run AI coding agents at scale: the local stack, the PM's commands and the watcher."""


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrator` console script; returns the exit code."""
    return cli.main(argv, prog_name="orchestrator", standalone_mode=False)


__all__ = ["cli", "main"]
