"""`orchestrator watch`: the singleton control loop that tracks every run (leader-elected).

The loop itself is `orchestrator.watcher.Watcher`; this module only wires it to the command line.
"""

from __future__ import annotations

import argparse
import signal
import threading

from orchestrator import logs
from orchestrator.cli.context import Context
from orchestrator.cli.errors import CliError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `watch`."""
    watch = sub.add_parser("watch", help="track every run (leader-elected; run one or two replicas)")
    watch.add_argument("--watch-timeout", type=int, default=60,
                       help="seconds each Kubernetes watch request stays open before it is renewed")
    watch.set_defaults(func=cmd_watch)


def cmd_watch(ctx: Context, args: argparse.Namespace) -> int:
    """Track every run: the leader-elected watch, reconcile and sweep loop (safe to run twice)."""
    try:
        from orchestrator.runners import get_runner
        from orchestrator.runtime import get_store
        from orchestrator.watcher import Watcher
    except ImportError:
        raise CliError("the watcher is not part of this installation (orchestrator.watcher is missing); "
                       "install a version that has it") from None

    settings = ctx.settings
    # JSON lines with every configured secret scrubbed, like the API's and the workers' logs.
    logs.configure(settings.log_level, secrets=settings.secret_values())
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher = Watcher(get_store(), settings, get_runner(settings), watch_timeout=args.watch_timeout)
    print(f"orchestrator: watching {settings.runner} runs as {watcher.holder}", flush=True)
    watcher.run(stop)
    return 0
