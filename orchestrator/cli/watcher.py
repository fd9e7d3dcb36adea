"""`orchestrator watcher` (alias `watch`): the singleton control loop that tracks every run (leader-elected).

The loop itself is `orchestrator.watcher.Watcher`; this module only wires it to the command line.
"""

from __future__ import annotations

import signal
import threading

import click

from orchestrator import logs
from orchestrator.cli.command import Command
from orchestrator.cli.context import Context
from orchestrator.cli.options import common_options, examples, pass_context

# Old name -> command: `orchestrator watch` started the watcher before it was called `watcher`.
ALIASES = {"watch": "watcher"}


@click.command(
    "watcher",
    cls=Command,
    epilog="Also available as `orchestrator watch`.\n\n"
    + examples("orchestrator watcher", "ORCHESTRATOR_RUNNER=kubernetes orchestrator watcher --watch-timeout 30"),
)
@click.option(
    "--watch-timeout",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Seconds each Kubernetes watch request stays open before it is renewed.",
)
@common_options
@pass_context
def watcher(app: Context, watch_timeout: int) -> int:
    """Track every run: watch, reconcile, sweep (leader-elected)."""
    # Imported here: the other commands never need the runners or a Celery app.
    from orchestrator import dispatch, tracing
    from orchestrator.celery_dispatch import default as celery_dispatcher
    from orchestrator.runners import get_runner
    from orchestrator.runtime import get_store
    from orchestrator.watcher import Watcher

    settings = app.settings
    # The watcher's composition root: the steps it re-drives go through a Celery app like the workers'.
    dispatch.install(celery_dispatcher())
    # JSON lines with every configured secret scrubbed, like the API's and the workers' logs.
    logs.configure(settings.log_level, secrets=settings.secret_values())
    tracing.setup(settings, "watcher")  # off unless ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT is set
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.metrics_port:  # one process: its own figures (or a multiprocess directory's, when one is set)
        from orchestrator.metrics import server

        server.serve(settings.metrics_port)
    loop = Watcher(get_store(), settings, get_runner(settings), watch_timeout=watch_timeout)
    print(f"orchestrator: watching {settings.runner} runs as {loop.holder}", flush=True)
    try:
        loop.run(stop)
    finally:
        tracing.shutdown()
    return 0


COMMANDS = (watcher,)
