"""The `orchestrator` command: the local stack (`up`) and, later, the PM commands."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import redis

from orchestrator.settings import ConfigError, Settings, get_settings

EXIT_USAGE = 2
EXIT_UNREACHABLE = 5


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


class Stack:
    """Child processes of `orchestrator up`, stopped together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> None:
        # Own process group per child, so Ctrl-C reaches us first and we stop
        # children in order instead of racing them.
        proc = subprocess.Popen(list(args), env=env, start_new_session=True)
        self.children.append((name, proc))

    def wait(self) -> int:
        while True:
            for name, proc in self.children:
                if proc.poll() is not None:
                    print(f"orchestrator: {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)

    def stop(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """Run Redis (when none answers) and a worker for every queue, in the foreground."""
    env = dict(os.environ)
    stack = Stack()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_url = settings.redis_url
    if not _redis_answers(redis_url):
        binary = shutil.which("redis-server")
        if not binary:
            print("orchestrator: no Redis answers at ORCHESTRATOR_REDIS_URL and redis-server is not installed",
                  file=sys.stderr)
            return EXIT_UNREACHABLE
        port = args.redis_port
        stack.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                              "--appendonly", "yes", "--save", ""], env)
        redis_url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            if _redis_answers(redis_url):
                break
            time.sleep(0.1)
    env["ORCHESTRATOR_REDIS_URL"] = redis_url
    stack.start("worker", [sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                           "-Q", "events,coordination,workspace,deploy", "-l", "INFO"], env)
    print(f"orchestrator: Redis at {redis_url}; worker consuming every queue. Ctrl-C stops everything.")
    try:
        return stack.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    """Track every run: the leader-elected watch, reconcile and sweep loop (safe to run twice)."""
    import logging
    import threading

    from orchestrator.runners import get_runner
    from orchestrator.runtime import get_store
    from orchestrator.watcher import Watcher

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher = Watcher(get_store(), settings, get_runner(settings), watch_timeout=args.watch_timeout)
    print(f"orchestrator: watching {settings.runner} runs as {watcher.holder}", flush=True)
    watcher.run(stop)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description="Run AI coding agents at scale.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole system on this machine, in the foreground")
    up.add_argument("--redis-port", type=int, default=6390, help="port of the redis-server started when none answers")
    up.set_defaults(func=cmd_up)
    watch = sub.add_parser("watch", help="track every run (leader-elected; run one or two replicas)")
    watch.add_argument("--watch-timeout", type=int, default=60,
                       help="seconds each Kubernetes watch request stays open before it is renewed")
    watch.set_defaults(func=cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"orchestrator: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
