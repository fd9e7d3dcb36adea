"""`orchestrator worker-alive`: the liveness probe of a worker, read from its consumer heartbeat file."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator import heartbeat
from orchestrator.cli.command import Command
from orchestrator.cli.errors import EXIT_FAILED, EXIT_OK
from orchestrator.cli.options import examples


@click.command(
    "worker-alive",
    cls=Command,
    epilog="Exit 0 while the worker consumes (or has not written its first heartbeat yet), 1 otherwise.\n\n"
    + examples("orchestrator worker-alive --heartbeat-file /tmp/worker-heartbeat.json --max-age 120"),
)
@click.option(
    "--heartbeat-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The file the worker was started with (`celery ... worker --heartbeat-file`).",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=1),
    default=heartbeat.DEFAULT_MAX_AGE,
    show_default=True,
    help="Seconds without a heartbeat, or with work waiting untaken, before the worker counts as stuck.",
)
def worker_alive(heartbeat_file: Path, max_age: float) -> int:
    """Tell whether a worker still consumes (a liveness probe)."""
    why = heartbeat.verdict(heartbeat_file, max_age)
    if why:
        click.echo(f"worker not consuming: {why}", err=True)
        return EXIT_FAILED
    return EXIT_OK


COMMANDS = (worker_alive,)
