"""What `orchestrator up` starts: each child's command and environment, and its own redis-server."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from rich.text import Text

from orchestrator.cli import localstate
from orchestrator.cli.context import Context
from orchestrator.cli.errors import (
    Unreachable,
)
from orchestrator.cli.processes import (
    Stack,
    free_port,
    port_free,
    redis_answers,
    tail,
)
from orchestrator.runners.agent_user import AgentUser
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from orchestrator.cli.stack import UpOptions

REDIS_PASSWORD_FILE = "redis-password"  # our redis-server's requirepass (mode 0600)
FLOWER_PASSWORD_FILE = "flower-password"  # Flower's basic auth password (mode 0600)
SESSION_SECRET_FILE = "session-secret"  # signs the web console's cookies across restarts (mode 0600)
FLOWER_USER = "orchestrator"
WORKER_HEARTBEAT_FILE = "worker-heartbeat.json"  # the worker's consumer heartbeat (orchestrator/heartbeat.py)


def redis_configured() -> bool:
    """True when ORCHESTRATOR_REDIS_URL is set in the environment: only then is an existing Redis used."""
    return bool(os.environ.get("ORCHESTRATOR_REDIS_URL", "").strip())


def sentinel_master_answers(settings: Settings) -> bool:
    """True when the master the configured Sentinels name answers PING."""
    from orchestrator.runtime import redis_target

    client = redis_target(settings).client(timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_redis(
    stack: Stack, settings: Settings, args: UpOptions, env: Mapping[str, str], ctx: Context
) -> tuple[str, str]:
    """The Redis URL to use and how it was found: configured, redis-server started, or in-memory.

    Whatever answers on the default port (another program's Redis, say) is not ours to use:
    only a URL set explicitly in ORCHESTRATOR_REDIS_URL is.
    """
    if redis_configured() and settings.redis_sentinels and sentinel_master_answers(settings):
        return settings.redis_url, "configured (ORCHESTRATOR_REDIS_SENTINELS)"
    if redis_configured() and not settings.redis_sentinels and redis_answers(settings.redis_url):
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
            handle.write(
                f'port {port}\nbind 127.0.0.1\ndir {json.dumps(str(redis_dir))}\nappendonly yes\nsave ""\n'
                f"requirepass {password}\n"
            )
        proc = stack.start("redis", [binary, str(conf)], env)
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        how = f"redis-server started here, password in {settings.data_dir / REDIS_PASSWORD_FILE}, data in {redis_dir}"
    elif importlib.util.find_spec("fakeredis") is not None:
        ctx.note(
            Text.assemble(
                ("warning:", "yellow"),
                " no Redis answers at ORCHESTRATOR_REDIS_URL and redis-server "
                "is not installed: using an in-memory Redis (fakeredis); nothing will persist after Ctrl-C",
            )
        )
        proc = stack.start(
            "redis", [sys.executable, "-m", "orchestrator.cli.fakeredis_server", "--port", str(port)], env
        )
        how = "in-memory fakeredis (nothing persists; no password: any local user can connect)"
    else:
        raise Unreachable(
            "no Redis answers at ORCHESTRATOR_REDIS_URL and neither redis-server nor fakeredis is "
            "installed; install redis-server (apt install redis-server) or pip install 'fakeredis[lua]'"
        )
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


def child_env(
    settings: Settings, redis_url: str, token: str, bind: str, agent: AgentUser | None = None
) -> dict[str, str]:
    """The environment of every child: this one, plus where Redis is and the local defaults."""
    env = dict(os.environ)
    if redis_url != settings.redis_url:  # a Redis of our own: configured Sentinels name another
        env.pop("ORCHESTRATOR_REDIS_SENTINELS", None)
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
