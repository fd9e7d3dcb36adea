"""`orchestrator up`: the whole system on this machine, in the foreground, stopped by Ctrl-C.

Every piece runs as a child process in its own session, so a Ctrl-C in the
terminal reaches this process alone, which then stops the children in reverse
order. This process is also a child subreaper (Linux), so an agent that its
worker left behind is re-parented here and stopped too: nothing outlives `up`.
Runs still going when it stops are abandoned, not cancelled: the next `up`
finds them lost and runs them again. Once everything answers, a child that
exits, or a worker whose consumer heartbeat says it stopped consuming, is
started again with backoff (orchestrator/cli/supervise.py) instead of
stopping the stack: the store keeps the work, and the watcher re-drives it.

Other local users are kept out: the data directory is 0700 (0710 with the
agents' group when agents run as their own user), our redis-server and Flower
want generated passwords kept there (0600), and an existing Redis is used only
when ORCHESTRATOR_REDIS_URL names it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
from rich.text import Text

from orchestrator.cli import localstate
from orchestrator.cli.children import (
    FLOWER_PASSWORD_FILE,
    FLOWER_USER,
    WORKER_HEARTBEAT_FILE,
    api_command,
    child_env,
    start_redis,
    watcher_available,
)
from orchestrator.cli.command import Command
from orchestrator.cli.context import Context
from orchestrator.cli.errors import (
    EXIT_OK,
    Conflict,
    Unreachable,
    UsageError,
)
from orchestrator.cli.local_agents import AgentBoundary, abandon_local_runs, choose_agent_user
from orchestrator.cli.options import common_options, examples, pass_context
from orchestrator.cli.processes import (
    Stack,
    become_subreaper,
    http_ok,
    port_free,
    tail,
)
from orchestrator.cli.supervise import describe, supervise_stack
from orchestrator.runners import agent_user
from orchestrator.settings import Settings


class StopRequested(Exception):
    """SIGTERM or SIGHUP: stop like Ctrl-C."""


@dataclass(frozen=True)
class UpOptions:
    """The options of `orchestrator up`."""

    host: str = "127.0.0.1"
    api_port: int | None = None
    redis_port: int = 6390
    flower: bool = False
    flower_port: int = 5555
    concurrency: int = 2


@click.command(
    "up",
    cls=Command,
    epilog="Starts Redis (unless ORCHESTRATOR_REDIS_URL is set and answers), the API, "
    "a worker for every queue, the watcher and, with --flower, Flower.\n\n"
    + examples(
        "orchestrator up",
        "orchestrator up --flower --api-port 9000",
        "ORCHESTRATOR_REDIS_URL=redis://127.0.0.1:6379/3 orchestrator up --concurrency 4",
    ),
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API and Flower listen on.")
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    help="Port of the API (default: the port of ORCHESTRATOR_API_URL, 8080).",
)
@click.option(
    "--redis-port",
    type=click.IntRange(1, 65535),
    default=6390,
    show_default=True,
    help="Port of the redis-server started when ORCHESTRATOR_REDIS_URL is not set or does not answer "
    "(a free one if taken).",
)
@click.option("--flower", is_flag=True, help="Also run Flower, the Celery dashboard.")
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True, help="Port of Flower.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes.")
@common_options
@pass_context
def up(app: Context, **options: Any) -> int:
    """Run the whole system here, in the foreground, until Ctrl-C."""
    return cmd_up(app, UpOptions(**options))


# Small helpers --------------------------------------------------------------


def cmd_up(ctx: Context, args: UpOptions) -> int:
    """Run Redis, the API, a worker for every queue, the watcher and Flower until Ctrl-C."""
    settings = ctx.settings
    data_dir = settings.data_dir
    os.umask(0o077)  # what the stack writes is its own; the agents' checkout is handed over to them
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    lock = localstate.acquire_lock(data_dir)
    api_port = args.api_port or urlparse(settings.api_url).port or 8080
    for port, what, option in (
        (api_port, "the API", "--api-port"),
        *(((args.flower_port, "Flower", "--flower-port"),) if args.flower else ()),
    ):
        if not port_free(args.host, port):
            lock.close()
            raise Conflict(f"port {port} for {what} is in use by another program; choose another with {option}")
    if args.flower and importlib.util.find_spec("flower") is None:
        lock.close()
        raise UsageError("--flower needs Flower: pip install flower")

    localstate.private_files(data_dir)
    log_dir = localstate.private_dir(data_dir / "logs")
    localstate.private_dir(data_dir / "runs")
    workspace_root = (
        Path(os.environ["ORCHESTRATOR_WORKSPACE_ROOT"])
        if os.environ.get("ORCHESTRATOR_WORKSPACE_ROOT", "").strip()
        else data_dir / "workspaces"
    )
    try:
        boundary = choose_agent_user(settings)
        if boundary.user is not None:
            # Agents may pass through the data dir to their checkout, and see nothing else in it.
            localstate.private_dir(data_dir, boundary.user.gid)
            if workspace_root.resolve().parent == data_dir.resolve():
                localstate.private_dir(workspace_root, boundary.user.gid)
            blocked = agent_user.unreachable(workspace_root.resolve(), boundary.user)
            if blocked is not None:
                os.chmod(data_dir, 0o700)
                boundary = AgentBoundary(None, f"{boundary.user.name} cannot enter {blocked}")
    except BaseException:
        lock.close()
        raise
    stack = Stack(log_dir)
    become_subreaper()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def stop_requested(signum: int, _frame: Any) -> None:
        raise StopRequested(signum)

    for sig in previous:
        signal.signal(sig, stop_requested)
    api_url = f"http://{args.host}:{api_port}"
    try:
        redis_url, redis_how = start_redis(stack, settings, args, os.environ, ctx)
        token = settings.api_tokens[0] if settings.api_tokens else localstate.ensure_token(data_dir)
        env = child_env(settings, redis_url, token, f"{args.host}:{api_port}", boundary.user)
        stack.start("api", api_command(f"{args.host}:{api_port}"), env)
        from orchestrator.steps import QUEUES

        worker_heartbeat = data_dir / WORKER_HEARTBEAT_FILE
        stack.start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "worker",
                "-Q",
                ",".join(QUEUES),
                "-c",
                str(args.concurrency),
                "-n",
                f"orchestrator-up-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
                "--heartbeat-file",
                str(worker_heartbeat),
            ],
            env,
        )
        watcher = watcher_available()
        if watcher:
            stack.start("watcher", [sys.executable, "-m", "orchestrator.cli", "watcher"], env)
        flower_url = ""
        flower_password = ""
        if args.flower:
            # Basic auth on every page and the API; the password in Flower's environment, not its command line.
            flower_password = localstate.ensure_secret(data_dir / FLOWER_PASSWORD_FILE)
            stack.start(
                "flower",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers.app",
                    "flower",
                    f"--address={args.host}",
                    f"--port={args.flower_port}",
                ],
                {**env, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{flower_password}"},
            )
            flower_url = f"http://{args.host}:{args.flower_port}"
        _wait_for_api(stack, api_url)
        localstate.write_state(
            data_dir,
            {
                "pid": os.getpid(),
                "api_url": api_url,
                "flower_url": flower_url,
                "redis": redis_how,
                "started_at": time.time(),
            },
        )
        _banner(
            ctx,
            api_url=api_url,
            flower_url=flower_url,
            token=token,
            redis_url=redis_url,
            redis_how=redis_how,
            env=env,
            log_dir=log_dir,
            watcher=watcher,
            settings=settings,
            boundary=boundary,
            flower_password=flower_password,
        )
        # From now on a child that exits (a worker that died when Redis went away and came back) or a
        # worker that stopped consuming is started again, with backoff: the store keeps the work.
        supervisor = supervise_stack(stack, worker_heartbeat)
        while True:
            for event in supervisor.check():
                ctx.note(describe(event, stack))
            time.sleep(0.5)
    except (KeyboardInterrupt, StopRequested):
        ctx.note("\norchestrator up: stopping…")
        return EXIT_OK
    finally:
        # A second Ctrl-C while stopping must not leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Runs still going are abandoned (retried by the next `up`), not cancelled.
        stack.stop(before_sweep=lambda: abandon_local_runs(data_dir))
        localstate.clear_state(data_dir, os.getpid())
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        lock.close()
        ctx.note("orchestrator up: stopped.")


def _wait_for_api(stack: Stack, api_url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not http_ok(f"{api_url}/health"):
        ended = stack.exited()
        if ended:
            name, code, log_path = ended
            raise Unreachable(
                f"{name} exited with code {code} while starting; last lines of {log_path}:\n" + tail(log_path)
            )
        if time.monotonic() > deadline:
            raise Unreachable(
                f"the API did not answer at {api_url}/health within {int(timeout)} s; see {stack.log_dir / 'api.log'}"
            )
        time.sleep(0.2)


def _banner(
    ctx: Context,
    *,
    api_url: str,
    flower_url: str,
    token: str,
    redis_url: str,
    redis_how: str,
    env: Mapping[str, str],
    log_dir: Path,
    watcher: bool,
    settings: Settings,
    boundary: AgentBoundary | None = None,
    flower_password: str = "",
) -> None:
    ctx.print(Text("orchestrator up: everything runs; Ctrl-C stops it.", style="green"))
    rows = [
        ("API", api_url),
        ("API docs", f"{api_url}/api/v1/docs  (OpenAPI: {api_url}/api/v1/openapi.json)"),
        ("console", f"{api_url}/  (sign in with the API token)"),
        (
            "Flower",
            f"{flower_url}  (user {FLOWER_USER}, password {flower_password})"
            if flower_url
            else "not started (add --flower)",
        ),
        ("API token", token),
        ("Redis", f"{_hide_password(redis_url)}  ({redis_how})"),
        ("runner", f"{env['ORCHESTRATOR_RUNNER']}; workspaces in {env['ORCHESTRATOR_WORKSPACE_ROOT']}"),
        (
            "repos",
            "local repositories allowed (ORCHESTRATOR_ALLOW_LOCAL_REPOS=true): file:// URLs or absolute paths"
            if env.get("ORCHESTRATOR_ALLOW_LOCAL_REPOS", "").lower() in ("1", "true", "yes", "on")
            else "remote repositories only",
        ),
        *(
            (("agents", f"run as the user {boundary.user.name}: they cannot read the stack's secrets"),)
            if boundary and boundary.user
            else ()
        ),
        ("watcher", "running" if watcher else "not available in this version"),
        ("logs", str(log_dir)),
    ]
    for label, value in rows:
        ctx.print(Text.assemble("  ", (f"{label:<10}", "bold"), f" {value}"))
    if boundary is not None and boundary.user is None and boundary.why_not:
        ctx.print(
            Text.assemble(
                ("warning:", "yellow"),
                " the local runner is NOT a security boundary: agents run "
                f"as this user ({boundary.why_not}) and can read every secret of the stack "
                "(API token, Redis password, ANTHROPIC_API_KEY, GITHUB_TOKEN).",
            )
        )
    ctx.print("")
    ctx.print("In another terminal (same directory), submit the example and follow it:")
    ctx.print("  orchestrator task submit --task-json examples/tasks.json --task-id 1 --service demo --agent claude")
    ctx.print("  orchestrator task watch demo/1")


def _hide_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


COMMANDS = (up,)
