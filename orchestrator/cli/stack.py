"""`orchestrator up`: the whole system on this machine, in the foreground, stopped by Ctrl-C.

Every piece runs as a child process in its own session, so a Ctrl-C in the
terminal reaches this process alone, which then stops the children in reverse
order. This process is also a child subreaper (Linux), so an agent that its
worker left behind is re-parented here and stopped too: nothing outlives `up`.
Runs still going when it stops are abandoned, not cancelled: the next `up`
finds them lost and runs them again.

Other local users are kept out: the data directory is 0700 (0710 with the
agents' group when agents run as their own user), our redis-server and Flower
want generated passwords kept there (0600), and an existing Redis is used only
when ORCHESTRATOR_REDIS_URL names it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
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
from orchestrator.cli.command import Command
from orchestrator.cli.context import Context
from orchestrator.cli.errors import (
    EXIT_FAILED,
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
    free_port,
    http_ok,
    port_free,
    redis_answers,
    tail,
)
from orchestrator.runners import agent_user
from orchestrator.runners.agent_user import AgentUser
from orchestrator.settings import Settings

REDIS_PASSWORD_FILE = "redis-password"  # our redis-server's requirepass (mode 0600)
FLOWER_PASSWORD_FILE = "flower-password"  # Flower's basic auth password (mode 0600)
SESSION_SECRET_FILE = "session-secret"  # signs the web console's cookies across restarts (mode 0600)
FLOWER_USER = "orchestrator"


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


@click.command("up", cls=Command, epilog="Starts Redis (unless ORCHESTRATOR_REDIS_URL is set and answers), the API, "
               "a worker for every queue, the watcher and, with --flower, Flower.\n\n" + examples(
    "orchestrator up",
    "orchestrator up --flower --api-port 9000",
    "ORCHESTRATOR_REDIS_URL=redis://127.0.0.1:6379/3 orchestrator up --concurrency 4"))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API and Flower listen on.")
@click.option("--api-port", type=click.IntRange(1, 65535), help="Port of the API (default: the port of "
              "ORCHESTRATOR_API_URL, 8080).")
@click.option("--redis-port", type=click.IntRange(1, 65535), default=6390, show_default=True,
              help="Port of the redis-server started when ORCHESTRATOR_REDIS_URL is not set or does not answer "
              "(a free one if taken).")
@click.option("--flower", is_flag=True, help="Also run Flower, the Celery dashboard.")
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True,
              help="Port of Flower.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes.")
@common_options
@pass_context
def up(app: Context, **options: Any) -> int:
    """Run the whole system here, in the foreground, until Ctrl-C."""
    return cmd_up(app, UpOptions(**options))


# Small helpers --------------------------------------------------------------


def redis_configured() -> bool:
    """True when ORCHESTRATOR_REDIS_URL is set in the environment: only then is an existing Redis used."""
    return bool(os.environ.get("ORCHESTRATOR_REDIS_URL", "").strip())


def start_redis(stack: Stack, settings: Settings, args: UpOptions, env: Mapping[str, str],
                ctx: Context) -> tuple[str, str]:
    """The Redis URL to use and how it was found: configured, redis-server started, or in-memory.

    Whatever answers on the default port (another program's Redis, say) is not ours to use:
    only a URL set explicitly in ORCHESTRATOR_REDIS_URL is.
    """
    if redis_configured() and redis_answers(settings.redis_url):
        return settings.redis_url, "configured (ORCHESTRATOR_REDIS_URL)"
    port = args.redis_port if port_free("127.0.0.1", args.redis_port) else free_port()
    url = f"redis://127.0.0.1:{port}/0"
    binary = shutil.which("redis-server")
    if binary:
        redis_dir = localstate.private_dir(settings.data_dir / "redis")
        password = localstate.ensure_secret(settings.data_dir / REDIS_PASSWORD_FILE)
        # The password goes in a 0600 file, not on the command line (other users read /proc/<pid>/cmdline).
        conf = redis_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"port {port}\nbind 127.0.0.1\ndir {json.dumps(str(redis_dir))}\nappendonly yes\nsave \"\"\n"
                         f"requirepass {password}\n")
        proc = stack.start("redis", [binary, str(conf)], env)
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        how = f"redis-server started here, password in {settings.data_dir / REDIS_PASSWORD_FILE}, data in {redis_dir}"
    elif importlib.util.find_spec("fakeredis") is not None:
        ctx.note(Text.assemble(("warning:", "yellow"), " no Redis answers at ORCHESTRATOR_REDIS_URL and redis-server "
                 "is not installed: using an in-memory Redis (fakeredis); nothing will persist after Ctrl-C"))
        proc = stack.start("redis", [sys.executable, "-m", "orchestrator.cli.fakeredis_server", "--port", str(port)],
                           env)
        how = "in-memory fakeredis (nothing persists; no password: any local user can connect)"
    else:
        raise Unreachable("no Redis answers at ORCHESTRATOR_REDIS_URL and neither redis-server nor fakeredis is "
                          "installed; install redis-server (apt install redis-server) or pip install 'fakeredis[lua]'")
    deadline = time.monotonic() + 20
    while not redis_answers(url, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Unreachable(f"the Redis started on port {port} did not answer:\n{tail(stack.children[-1][2])}")
        time.sleep(0.1)
    return url, how


def api_command(bind: str) -> list[str]:
    """gunicorn with the API's config module when it exists, bound to our address."""
    args = [sys.executable, "-m", "gunicorn"]
    if importlib.util.find_spec("api.gunicorn_conf") is not None:
        args += ["-c", "python:api.gunicorn_conf"]
    else:
        args += ["--workers", "2", "--access-logfile", "-"]
    # Command-line flags win over the config file. The control socket would be
    # one fixed path in $HOME shared by every gunicorn of this user: not needed here.
    args += ["--bind", bind]
    if _gunicorn_has_control_socket():
        args.append("--no-control-socket")
    return args + ["api.wsgi:app"]


def _gunicorn_has_control_socket() -> bool:
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return False
    return any("--no-control-socket" in (getattr(s, "cli", None) or []) for s in KNOWN_SETTINGS)


def watcher_available() -> bool:
    """True when this installation has the watcher behind `orchestrator watcher`."""
    try:
        return importlib.util.find_spec("orchestrator.watcher") is not None
    except ModuleNotFoundError:
        return False


def child_env(settings: Settings, redis_url: str, token: str, bind: str,
              agent: AgentUser | None = None) -> dict[str, str]:
    """The environment of every child: this one, plus where Redis is and the local defaults."""
    env = dict(os.environ)
    env["ORCHESTRATOR_REDIS_URL"] = redis_url
    if not settings.api_tokens:
        env["ORCHESTRATOR_API_TOKENS"] = token
    if not settings.session_secret:  # console sign-ins survive a restart and work in every API process
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        env["ORCHESTRATOR_SESSION_SECRET"] = localstate.ensure_secret(settings.data_dir / SESSION_SECRET_FILE)
    env["ORCHESTRATOR_RUNNER"] = settings.runner  # `local` unless configured for a cluster
    env["ORCHESTRATOR_DATA_DIR"] = str(settings.data_dir)
    if not os.environ.get("ORCHESTRATOR_WORKSPACE_ROOT", "").strip():
        env["ORCHESTRATOR_WORKSPACE_ROOT"] = str(settings.data_dir / "workspaces")
    else:
        env["ORCHESTRATOR_WORKSPACE_ROOT"] = str(settings.workspace_root)
    if settings.runner == "local":  # a laptop's repositories: file:// URLs or absolute paths (unless turned off)
        env.setdefault("ORCHESTRATOR_ALLOW_LOCAL_REPOS", "true")
    env["GUNICORN_BIND"] = bind
    # A laptop needs two API processes, and Ctrl-C should not wait long for open log streams.
    env.setdefault("GUNICORN_WORKERS", "2")
    env.setdefault("GUNICORN_GRACEFUL_TIMEOUT", "5")
    # Flower's API is never open: its password reaches Flower's environment alone (see cmd_up).
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    env["ORCHESTRATOR_LOCAL_AGENT_USER"] = agent.name if agent else ""
    # The children run from the same code as this command, even outside the install.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def cmd_up(ctx: Context, args: UpOptions) -> int:
    """Run Redis, the API, a worker for every queue, the watcher and Flower until Ctrl-C."""
    settings = ctx.settings
    data_dir = settings.data_dir
    os.umask(0o077)  # what the stack writes is its own; the agents' checkout is handed over to them
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    lock = localstate.acquire_lock(data_dir)
    api_port = args.api_port or urlparse(settings.api_url).port or 8080
    for port, what, option in ((api_port, "the API", "--api-port"),
                               *(((args.flower_port, "Flower", "--flower-port"),) if args.flower else ())):
        if not port_free(args.host, port):
            lock.close()
            raise Conflict(f"port {port} for {what} is in use by another program; choose another with {option}")
    if args.flower and importlib.util.find_spec("flower") is None:
        lock.close()
        raise UsageError("--flower needs Flower: pip install flower")

    localstate.private_files(data_dir)
    log_dir = localstate.private_dir(data_dir / "logs")
    localstate.private_dir(data_dir / "runs")
    workspace_root = Path(os.environ["ORCHESTRATOR_WORKSPACE_ROOT"]) if os.environ.get(
        "ORCHESTRATOR_WORKSPACE_ROOT", "").strip() else data_dir / "workspaces"
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

        stack.start("worker", [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", ",".join(QUEUES),
                               "-c", str(args.concurrency), "-n", f"orchestrator-up-{os.getpid()}@%h",
                               "--without-gossip", "--without-mingle", "-l", "INFO"], env)
        watcher = watcher_available()
        if watcher:
            stack.start("watcher", [sys.executable, "-m", "orchestrator.cli", "watcher"], env)
        flower_url = ""
        flower_password = ""
        if args.flower:
            # Basic auth on every page and the API; the password in Flower's environment, not its command line.
            flower_password = localstate.ensure_secret(data_dir / FLOWER_PASSWORD_FILE)
            stack.start("flower", [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
                                   f"--address={args.host}", f"--port={args.flower_port}"],
                        {**env, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{flower_password}"})
            flower_url = f"http://{args.host}:{args.flower_port}"
        _wait_for_api(stack, api_url)
        localstate.write_state(data_dir, {"pid": os.getpid(), "api_url": api_url, "flower_url": flower_url,
                                          "redis": redis_how, "started_at": time.time()})
        _banner(ctx, api_url=api_url, flower_url=flower_url, token=token, redis_url=redis_url, redis_how=redis_how,
                env=env, log_dir=log_dir, watcher=watcher, settings=settings, boundary=boundary,
                flower_password=flower_password)
        while True:
            ended = stack.exited()
            if ended:
                name, code, log_path = ended
                ctx.fail(f"{name} exited with code {code}; stopping everything. Last lines of {log_path}:\n"
                         + tail(log_path))
                return EXIT_FAILED
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
            raise Unreachable(f"{name} exited with code {code} while starting; last lines of {log_path}:\n"
                              + tail(log_path))
        if time.monotonic() > deadline:
            raise Unreachable(f"the API did not answer at {api_url}/health within {int(timeout)} s; see "
                              f"{stack.log_dir / 'api.log'}")
        time.sleep(0.2)


def _banner(ctx: Context, *, api_url: str, flower_url: str, token: str, redis_url: str, redis_how: str,
            env: Mapping[str, str], log_dir: Path, watcher: bool, settings: Settings,
            boundary: AgentBoundary | None = None, flower_password: str = "") -> None:
    ctx.print(Text("orchestrator up: everything runs; Ctrl-C stops it.", style="green"))
    rows = [
        ("API", api_url),
        ("API docs", f"{api_url}/api/v1/docs  (OpenAPI: {api_url}/api/v1/openapi.json)"),
        ("console", f"{api_url}/  (sign in with the API token)"),
        ("Flower", f"{flower_url}  (user {FLOWER_USER}, password {flower_password})" if flower_url
         else "not started (add --flower)"),
        ("API token", token),
        ("Redis", f"{_hide_password(redis_url)}  ({redis_how})"),
        ("runner", f"{env['ORCHESTRATOR_RUNNER']}; workspaces in {env['ORCHESTRATOR_WORKSPACE_ROOT']}"),
        ("repos", "local repositories allowed (ORCHESTRATOR_ALLOW_LOCAL_REPOS=true): file:// URLs or absolute paths"
         if env.get("ORCHESTRATOR_ALLOW_LOCAL_REPOS", "").lower() in ("1", "true", "yes", "on")
         else "remote repositories only"),
        *((("agents", f"run as the user {boundary.user.name}: they cannot read the stack's secrets"),)
          if boundary and boundary.user else ()),
        ("watcher", "running" if watcher else "not available in this version"),
        ("logs", str(log_dir)),
    ]
    for label, value in rows:
        ctx.print(Text.assemble("  ", (f"{label:<10}", "bold"), f" {value}"))
    if boundary is not None and boundary.user is None and boundary.why_not:
        ctx.print(Text.assemble(("warning:", "yellow"), " the local runner is NOT a security boundary: agents run "
                                f"as this user ({boundary.why_not}) and can read every secret of the stack "
                                "(API token, Redis password, ANTHROPIC_API_KEY, GITHUB_TOKEN)."))
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
